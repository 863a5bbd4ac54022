"""Log the sparsity of the effective weights θ over training."""

from __future__ import annotations

import lightning as L

from sparsify.errors import ConfigError
from sparsify.masks import sparsity_report


class SparsityMonitor(L.Callback):
    """Every ``every_n_steps`` optimizer steps and at the end of every epoch, log
    ``sparsity/global`` (zero fraction over all prunable θ) and, with ``per_layer``,
    ``sparsity/<layer>``. The epoch values go through Lightning (``pl_module.log_dict``), so that
    ``ModelCheckpoint`` and ``EarlyStopping`` can monitor them; every rank holds the same
    weights and logs the same values, with ``sync_dist=True`` (a mean of equal values) as
    Lightning asks of epoch-level metrics under DDP. The step values are written by rank 0
    straight to the trainer's loggers: a key logged through Lightning within an epoch is
    computed again at every later step of it, which cost a tenth of a LeNet-300-100 step.

    Args:
        every_n_steps: log every this many optimizer steps (and at the end of every epoch).
        per_layer: log every layer's sparsity as well as the global one.
    """

    def __init__(self, every_n_steps: int = 50, per_layer: bool = True):
        if every_n_steps < 1:
            raise ConfigError(f"every_n_steps={every_n_steps!r} is invalid: must be >= 1")
        self.every_n_steps = every_n_steps
        self.per_layer = per_layer

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0 and trainer.is_global_zero:
            metrics = self.metrics(pl_module)
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log_dict(self.metrics(pl_module), on_step=False, on_epoch=True, sync_dist=True)

    def metrics(self, pl_module: L.LightningModule) -> dict[str, float]:
        report = sparsity_report(pl_module)
        metrics = {"sparsity/global": report["global"]}
        if self.per_layer:
            metrics.update({f"sparsity/{name}": s for name, s in report["layers"].items()})
        return metrics
