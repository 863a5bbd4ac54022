"""PILoT: a time-dependent regularization strength α_t on ‖m‖² + ‖w‖² (Mask in the Mirror,
ICLR 2025): the Lightning adapter of ``sparsify.rules.PILoT``."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from sparsify import rules
from sparsify.callbacks.prune_at_end import PruneAtEnd
from sparsify.callbacks.rule_callback import RuleCallback
from sparsify.callbacks.state_key import argument_key
from sparsify.errors import ConfigError
from sparsify.rules.pilot import (  # noqa: F401  the measures, where they were
    l1_outside_top,
    pointwise_l1_norm,
    pointwise_magnitudes,
)


class PILoT(rules.PILoT, RuleCallback):
    __doc__ = rules.PILoT.__doc__

    def check_trainer(self, trainer: L.Trainer) -> None:
        if self.adaptive and not (trainer.max_epochs or 0) > 0:
            raise ConfigError(
                f"max_epochs={trainer.max_epochs!r} is invalid with PILoT(schedule='adaptive'): "
                "the rule needs the number of epochs T"
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_trainer(trainer)
        pruners = [c for c in trainer.callbacks if isinstance(c, PruneAtEnd)]
        if self.sparsity is None and pruners:
            self.target_sparsity = pruners[0].sparsity
        super().on_fit_start(trainer, pl_module)

    def inform(self, message: str) -> None:
        rank_zero_info(message)

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return argument_key(self, "alpha_init", "adaptive", "monitor")
