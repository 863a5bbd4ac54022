"""Reparametrize every prunable weight as θ = m ⊙ w before the optimizers are built: the
Lightning adapter of ``sparsify.rules.Reparametrize``."""

from __future__ import annotations

from sparsify import rules
from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.rule_callback import RuleCallback


class Reparametrize(rules.Reparametrize, PortableCheckpoint, RuleCallback):
    __doc__ = rules.Reparametrize.__doc__

    prepares_every_stage = True
