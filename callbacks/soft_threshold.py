"""STR: soft threshold reparameterization with a learned threshold per layer: the Lightning
adapter of ``sparsify.rules.soft_threshold``."""

from __future__ import annotations

from sparsify import rules
from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.rule_callback import RuleCallback


class SoftThresholdReparametrization(
    rules.SoftThresholdReparametrization, RuleCallback, PortableCheckpoint
):
    __doc__ = rules.SoftThresholdReparametrization.__doc__

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.decay_thresholds(pl_module, [optimizer])  # the optimizer about to step
