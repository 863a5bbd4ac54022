"""Soft masks under Hugging Face's ``Trainer``: the adapter of ``sparsify.rules.soft_threshold``
(STR). It installs its soft masks when the ``Trainer`` is built (``on_init_end``), before it
builds its optimizer, so the optimizer sees the thresholds."""

from __future__ import annotations

from sparsify import rules
from sparsify.hf.adapter import RuleTrainerCallback


class SoftThresholdReparametrization(rules.SoftThresholdReparametrization, RuleTrainerCallback):
    __doc__ = rules.SoftThresholdReparametrization.__doc__
