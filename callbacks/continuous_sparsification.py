"""Continuous sparsification (CS): a sigmoid soft mask with a growing temperature, in rounds: the
Lightning adapter of ``sparsify.rules.continuous_sparsification``."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from sparsify import rules
from sparsify.callbacks.ddp import rewrap_ddp
from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.rule_callback import RuleCallback


class ContinuousSparsification(rules.ContinuousSparsification, RuleCallback, PortableCheckpoint):
    __doc__ = rules.ContinuousSparsification.__doc__

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.check_epochs(trainer.max_epochs)
        super().setup(trainer, pl_module, stage)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        searching = not self.ticket_started
        super().on_train_epoch_start(trainer, pl_module)
        if searching and self.ticket_started:
            if self.fold_scale:
                rewrap_ddp(trainer)  # the scores left the model
            rank_zero_info(
                f"ContinuousSparsification: epoch {trainer.current_epoch}, training the ticket "
                f"from the weights of epoch {self.schedule(trainer.max_epochs)[2]}"
            )
