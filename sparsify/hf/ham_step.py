"""``HAMStep`` for Hugging Face's ``Trainer``: the adapter of ``sparsify.rules.HAMStep``."""

from __future__ import annotations

from sparsify import rules
from sparsify.hf.adapter import RuleTrainerCallback


class HAMStep(rules.HAMStep, RuleTrainerCallback):
    __doc__ = rules.HAMStep.__doc__ + (
        """
    A ``Trainer`` keeps its own optimizer, so under it the HAM step runs in
    ``on_optimizer_step``: right after the optimizer's step, before the learning-rate scheduler
    steps and the gradients are cleared, as ``HAM.step`` would; a step the ``Trainer`` skipped
    (mixed precision overflow) gets no HAM step either.
    """
    )

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if not getattr(optimizer, "step_was_skipped", False):
            self.hyperbolic_step()
