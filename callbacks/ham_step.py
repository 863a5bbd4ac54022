"""The HAM step (Hyperbolic Aware Minimization, ICLR 2026) for any LightningModule: its own
optimizers, wrapped in the optimizer ``sparsify.optim.HAM`` when fitting starts (docs/methods.md,
"HAM"): the Lightning adapter of ``sparsify.rules.HAMStep``."""

from __future__ import annotations

import lightning as L

from sparsify import rules
from sparsify.callbacks.rule_callback import RuleCallback


class HAMStep(rules.HAMStep, RuleCallback):
    __doc__ = rules.HAMStep.__doc__

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning steps the optimizers through its strategy, whose setter re-wraps them.
        trainer.strategy.optimizers = self.wrap(trainer.strategy.optimizers)
