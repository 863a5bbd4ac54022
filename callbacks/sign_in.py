"""Sign-In: train the kept weights as θ = m ⊙ w and reset the inner scale every p epochs: the
Lightning adapter of ``sparsify.rules.SignIn``."""

from __future__ import annotations

from sparsify import rules
from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.rule_callback import RuleCallback
from sparsify.callbacks.state_key import argument_key


class SignIn(rules.SignIn, PortableCheckpoint, RuleCallback):
    __doc__ = rules.SignIn.__doc__

    prepares_every_stage = True

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return argument_key(self, "include", "exclude")
