"""AC/DC: alternating compressed and dense phases, ending compressed (Peste et al. 2021): the
Lightning adapter of ``sparsify.rules.acdc``."""

from __future__ import annotations

import lightning as L

from sparsify import rules
from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.rule_callback import RuleCallback
from sparsify.callbacks.state_key import argument_key


class ACDC(rules.ACDC, RuleCallback, PortableCheckpoint):
    __doc__ = rules.ACDC.__doc__

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Also outside fit: a checkpoint of a compressed phase loads into the masked model.
        self.prepare(pl_module)
        if stage == "fit":
            self.check_epochs(trainer.max_epochs)

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return argument_key(self, "sparsity", "include", "exclude")
