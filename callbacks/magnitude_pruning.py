"""Gradual magnitude pruning (GMP) with the cubic schedule of Zhu & Gupta (2017): the Lightning
adapter of ``sparsify.rules.magnitude_pruning``."""

from __future__ import annotations

import lightning as L

from sparsify import rules
from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.rule_callback import RuleCallback
from sparsify.callbacks.state_key import argument_key


class MagnitudePruning(rules.MagnitudePruning, RuleCallback, PortableCheckpoint):
    __doc__ = rules.MagnitudePruning.__doc__

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            max_epochs = trainer.max_epochs if (trainer.max_epochs or 0) > 0 else None
            self.check_length(max_epochs, "epoch", "max_epochs")
        # Also outside fit: a checkpoint of a pruned run loads into the masked model.
        self.prepare(pl_module)

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return argument_key(self, "final_sparsity", "include", "exclude", "pattern")
