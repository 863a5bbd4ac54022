"""Log the sparsity of the effective weights θ over training."""

from __future__ import annotations

import lightning as L

from sparsify.errors import ConfigError
from sparsify.masks import sparsity_report


class SparsityMonitor(L.Callback):
    """Every ``every_n_steps`` optimizer steps and at the end of every epoch, log
    ``sparsity/global`` (zero fraction over all prunable θ) and, with ``per_layer``,
    ``sparsity/<layer>``, through Lightning (``pl_module.log_dict``), so that
    ``ModelCheckpoint`` and ``EarlyStopping`` can monitor them. Every rank holds the same
    weights and logs the same values; the epoch values carry ``sync_dist=True`` (a mean of
    equal values) as Lightning asks of epoch-level metrics under DDP.

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
        if trainer.global_step % self.every_n_steps == 0:
            pl_module.log_dict(self.metrics(pl_module), on_step=True, on_epoch=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log_dict(self.metrics(pl_module), on_step=False, on_epoch=True, sync_dist=True)

    def metrics(self, pl_module: L.LightningModule) -> dict[str, float]:
        report = sparsity_report(pl_module)
        metrics = {"sparsity/global": report["global"]}
        if self.per_layer:
            metrics.update({f"sparsity/{name}": s for name, s in report["layers"].items()})
        return metrics
