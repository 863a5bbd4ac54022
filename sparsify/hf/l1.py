"""``L1Penalty`` for Hugging Face's ``Trainer``: the adapter of ``sparsify.rules.L1Penalty``."""

from __future__ import annotations

from sparsify import rules
from sparsify.hf.adapter import RuleTrainerCallback


class L1Penalty(rules.L1Penalty, RuleTrainerCallback):
    __doc__ = rules.L1Penalty.__doc__ + (
        """
    Under the ``Trainer`` the gradient is added in ``on_pre_optimizer_step``, after the
    ``Trainer`` has clipped the gradients (``max_grad_norm``, 1.0 by default); Lightning adds it
    before clipping. Set ``max_grad_norm=0`` for the same steps as under Lightning.
    """
    )
