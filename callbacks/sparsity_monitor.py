"""Log the sparsity of the effective weights θ over training."""

from __future__ import annotations

import lightning as L

from sparsify.errors import ConfigError
from sparsify.masks import sparsity_report


class SparsityMonitor(L.Callback):
    """Every ``every_n_steps`` optimizer steps and at the end of every epoch, log
    ``sparsity/global`` (zero fraction over all prunable θ) and, with ``per_layer``,
    ``sparsity/<layer>`` to every logger, from rank 0 only."""

    def __init__(self, every_n_steps: int = 50, per_layer: bool = True):
        if every_n_steps < 1:
            raise ConfigError(f"every_n_steps={every_n_steps!r} is invalid: must be >= 1")
        self.every_n_steps = every_n_steps
        self.per_layer = per_layer

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.log_sparsity(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.log_sparsity(trainer, pl_module)

    def log_sparsity(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not trainer.loggers:
            return
        report = sparsity_report(pl_module)
        metrics = {"sparsity/global": report["global"]}
        if self.per_layer:
            metrics.update({f"sparsity/{name}": s for name, s in report["layers"].items()})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
