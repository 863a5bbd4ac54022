"""Explicit L1 penalties, λ‖θ‖₁ or λ‖m‖₁ (Mask in the Mirror, ICLR 2025): the Lightning adapter of
``sparsify.rules.L1Penalty``, which adds the penalty's gradient in ``on_before_optimizer_step``."""

from __future__ import annotations

from sparsify import rules
from sparsify.callbacks.rule_callback import RuleCallback


class L1Penalty(rules.L1Penalty, RuleCallback):
    __doc__ = rules.L1Penalty.__doc__
