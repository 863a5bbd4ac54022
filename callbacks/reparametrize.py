"""Reparametrize every prunable weight as θ = m ⊙ w before the optimizers are built: the
Lightning adapter of ``sparsify.rules.Reparametrize``."""

from __future__ import annotations

import lightning as L

from sparsify import rules
from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.rule_callback import RuleCallback


class Reparametrize(rules.Reparametrize, PortableCheckpoint, RuleCallback):
    __doc__ = rules.Reparametrize.__doc__

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # every stage, not only fit: a checkpoint of m, w loads into validate and test too
        self.prepare(pl_module)
