"""The HAM step (Hyperbolic Aware Minimization, ICLR 2026): after every ordinary optimizer step,
the multiplicative step of ``sparsify.optim.HAM`` (docs/methods.md, "HAM")."""

from __future__ import annotations

import torch

from sparsify.optim import HAM, check_ham
from sparsify.rules.base import Rule, Run


class HAMStep(Rule):
    """Wrap every optimizer of the run in ``sparsify.optim.HAM``: after each ordinary step,
    every weight θ with ≥ 2 dims is multiplied by exp(clamp(lr · (−α · sign(θ) ⊙ ∇f − β), −5,
    5)); biases and norm parameters get no HAM step. The reference's safeguards
    (``max_exponent``, ``skip_zeros``, ``revert_nan``, ``max_weight_norm``) are on by default;
    ``sparsify.optim`` describes each.

    The optimizers are the ones the training code built (any optimizer, any param groups, any
    scheduler); they are wrapped once built and before a checkpoint's optimizer state is
    restored. The wrapper shares their param groups, so learning-rate schedulers built on them
    keep driving them (``sparsify.param_groups.drives``), and its ``state_dict`` is the wrapped
    optimizer's, so checkpoints resume with or without HAM. Combines with the sparsification
    callbacks (masks, m ⊙ w): it acts on whatever parameters the optimizer holds. The step is
    the same on every DDP process (gradients are reduced).

    Args:
        alpha: α, the strength of the multiplicative step (published: 200 on ImageNet; scale it
            so that lr · α · |∇f| stays well below 1 on a small network).
        beta: β, the decay every weight gets in each HAM step (published: 1e-3 on ImageNet).
        max_exponent: the exponent is clamped to [−max_exponent, max_exponent]; ``None``
            leaves it unclamped.
        skip_zeros: multiply only the entries that are not exactly 0, so pruned weights stay 0.
        revert_nan: a tensor with NaN after the step keeps the ordinary step's value.
        max_weight_norm: every parameter with a gradient is scaled back to this Frobenius norm
            when it exceeds it; ``None`` switches it off.
    """

    def __init__(
        self,
        alpha: float = 200.0,
        beta: float = 1e-3,
        max_exponent: float | None = 5.0,
        skip_zeros: bool = True,
        revert_nan: bool = True,
        max_weight_norm: float | None = 1000.0,
    ):
        check_ham(alpha, beta, max_exponent, max_weight_norm)
        self.options = {
            "alpha": float(alpha),
            "beta": float(beta),
            "max_exponent": max_exponent,
            "skip_zeros": skip_zeros,
            "revert_nan": revert_nan,
            "max_weight_norm": max_weight_norm,
        }
        self.alpha, self.beta = self.options["alpha"], self.options["beta"]
        self.wrapped: list[HAM] = []

    def wrap(self, optimizers: list[torch.optim.Optimizer]) -> list[HAM]:
        """``optimizers``, each wrapped in ``HAM`` (unless it already is)."""
        return [opt if isinstance(opt, HAM) else HAM(opt, **self.options) for opt in optimizers]

    def attach(self, run: Run) -> None:
        """Wrap the run's optimizers in place: a loop that steps ``run.optimizers`` from now on
        makes the HAM step; an adapter whose framework keeps its own reference to the optimizer
        calls ``hyperbolic_step`` after that optimizer's step instead."""
        self.wrapped = self.wrap(run.optimizers)
        run.optimizers[:] = self.wrapped

    def hyperbolic_step(self) -> None:
        """The HAM step alone, for an optimizer that has just made its ordinary step."""
        for ham in self.wrapped:
            ham.hyperbolic_step()
