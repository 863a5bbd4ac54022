"""Pruning at initialization: a mask chosen once, before the first optimizer step, then fixed:
the Lightning adapter of ``sparsify.rules.prune_at_init``."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from sparsify import rules
from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.rule_callback import RuleCallback, lightning_run
from sparsify.callbacks.state_key import argument_key


class PruneAtInit(rules.PruneAtInit, RuleCallback, PortableCheckpoint):
    __doc__ = rules.PruneAtInit.__doc__
    prepares_every_stage = True

    @property
    def state_key(self) -> str:
        return argument_key(self, "score", "sparsity", "distribution", "pattern")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = self.start(lightning_run(trainer, pl_module))
        if metrics is None:
            return
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        rank_zero_info(
            f"PruneAtInit: {self.score} scores, {self.distribution} densities, sparsity "
            f"{metrics['pai/sparsity']:.4f}"
        )
