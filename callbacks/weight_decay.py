"""Weight decay that follows a schedule of training progress, e.g. switched off half-way: the
Lightning adapters of ``sparsify.rules.weight_decay``."""

from __future__ import annotations

from sparsify import rules
from sparsify.callbacks.rule_callback import RuleCallback


class WeightDecaySchedule(rules.WeightDecaySchedule, RuleCallback):
    __doc__ = rules.WeightDecaySchedule.__doc__

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return self._generate_state_key(
            schedule=self.schedule_name, groups=self.groups, target=self.target
        )


class WeightDecaySwitchOff(rules.WeightDecaySwitchOff, WeightDecaySchedule):
    __doc__ = rules.WeightDecaySwitchOff.__doc__
