"""RiGL: sparse-to-sparse training that drops small weights and grows large gradients: the
Lightning adapter of ``sparsify.rules.rigl``."""

from __future__ import annotations

from sparsify import rules
from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.rule_callback import RuleCallback
from sparsify.callbacks.state_key import argument_key
from sparsify.rules.rigl import update_interval  # noqa: F401  (imported from here too)


class RiGL(rules.RiGL, RuleCallback, PortableCheckpoint):
    __doc__ = rules.RiGL.__doc__

    prepares_every_stage = True

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return argument_key(self, "sparsity", "include", "exclude", "pattern")
