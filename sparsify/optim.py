"""HAM: Hyperbolic Aware Minimization, a multiplicative step after any optimizer's step.

The authors' follow-up to "Mask in the Mirror" (Hyperbolic Aware Minimization, ICLR 2026; see
docs/methods.md, "HAM"; their wrapper is ``HamOptimizerWrapper`` in the README of TomJacobs05/HAM)
gets the hyperbolic geometry of θ = m ⊙ w without doubling the parameters: after each ordinary
optimizer step, every weight tensor θ with at least 2 dimensions is multiplied elementwise by

    exp(clamp(lr · (−α · sign(θ) ⊙ ∇f − β), −5, 5))

with the learning rate lr of its param group (published defaults α = 200, β = 1e-3). θ is the
weight after the ordinary step, ∇f the gradient that step used (the parameter's ``.grad``: the
loss gradient; decoupled or optimizer-internal weight decay does not enter it). To first order
the step moves θ by −lr · α · |θ| ⊙ ∇f: a gradient step whose size grows with |θ|, like the
mirror flow of m ⊙ w, and β decays every weight a little (an implicit L1 bias). Biases and norm
parameters (fewer than 2 dimensions) get no HAM step.

The reference wrapper's safeguards, each on by default and each switchable here:

- ``max_exponent`` (5): the exponent is clamped to [−5, 5]; ``None`` leaves it unclamped.
- ``skip_zeros``: only entries that are not exactly 0 are multiplied, so pruned weights stay 0.
- ``revert_nan``: a tensor that has NaN after the step (or whose weight or gradient had NaN)
  is left as the ordinary step made it, and is not norm-clipped.
- ``max_weight_norm`` (1000): every parameter with a gradient, 1-d ones included, is scaled
  back to this Frobenius norm when it exceeds it; ``None`` switches it off.

The reference also calls ``clip_grad_norm_(max_norm=20)`` on each group *after* its step; those
gradients feed no later update (they are zeroed before the next backward pass), so it is not
reproduced: clip gradients before the step with Lightning's ``gradient_clip_val`` if wanted.

Step size: the exponent is lr · α · |∇f| per entry. The published α = 200 was tuned for
ResNet-50 on ImageNet, whose per-entry gradients are tiny; on a small network (the digits CNN:
first-step gradients up to ~10, lr 0.05) it is 100 and more, the clamp lets every step multiply
weights by e⁵, and training diverges. Scale α so that lr · α · |∇f| stays well below 1
(docs/performance.md has the measured digits values).
"""

from __future__ import annotations

import torch

from sparsify.errors import ConfigError


class HAM(torch.optim.Optimizer):
    """Wrap ``optimizer``: ``step`` runs its step, then the multiplicative HAM step.

    The wrapper shares the wrapped optimizer's ``param_groups``, ``state`` and ``defaults``
    (learning-rate schedulers built on either keep working) and its ``state_dict`` is the wrapped
    optimizer's, so checkpoints load with or without HAM. ``alpha`` and ``beta`` are the α and β
    of the formula in the module docstring; ``max_exponent``, ``skip_zeros``, ``revert_nan`` and
    ``max_weight_norm`` the reference's safeguards described there.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        alpha: float = 200.0,
        beta: float = 1e-3,
        max_exponent: float | None = 5.0,
        skip_zeros: bool = True,
        revert_nan: bool = True,
        max_weight_norm: float | None = 1000.0,
    ):
        if isinstance(optimizer, HAM):
            raise ConfigError("optimizer is invalid: it is already wrapped by HAM")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(f"optimizer={optimizer!r} is invalid: need a torch.optim.Optimizer")
        check_ham(alpha, beta, max_exponent, max_weight_norm)
        # No Optimizer.__init__: it would copy the param groups instead of sharing them.
        self.optimizer = optimizer
        self.alpha, self.beta = float(alpha), float(beta)
        self.max_exponent = None if max_exponent is None else float(max_exponent)
        self.skip_zeros, self.revert_nan = bool(skip_zeros), bool(revert_nan)
        self.max_weight_norm = None if max_weight_norm is None else float(max_weight_norm)

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    @property
    def state(self) -> dict:
        return self.optimizer.state

    @property
    def defaults(self) -> dict:
        return self.optimizer.defaults

    def step(self, closure=None):
        loss = self.optimizer.step(closure)
        self.hyperbolic_step()
        return loss

    @torch.no_grad()
    def hyperbolic_step(self) -> None:
        """θ ← θ ⊙ exp(clamp(lr · (−α · sign(θ) ⊙ ∇f − β))) for every θ with ≥ 2 dims, then the
        norm clip of every parameter; both only for parameters with a gradient.

        Written without host synchronization (no ``.item()``): a NaN test selects the old or
        the new tensor with ``torch.where`` instead of branching.
        """
        for group in self.param_groups:
            lr = float(group["lr"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                invalid = [p, p.grad]
                if p.ndim >= 2:
                    factor = self._factor(p, p.grad, lr)
                    updated = p * factor
                    if self.skip_zeros:
                        updated = torch.where(p != 0, updated, p)
                    invalid += [factor, updated]
                intact = None
                if self.revert_nan:
                    intact = ~torch.stack([t.isnan().any() for t in invalid]).any()
                if p.ndim >= 2:
                    p.copy_(updated if intact is None else torch.where(intact, updated, p))
                if self.max_weight_norm is not None:
                    self._clip_norm(p, intact)

    def _factor(self, theta: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
        exponent = torch.sign(theta).mul_(grad).mul_(-self.alpha * lr).sub_(self.beta * lr)
        if self.max_exponent is not None:
            exponent.clamp_(-self.max_exponent, self.max_exponent)
        return exponent.exp_()

    def _clip_norm(self, p: torch.Tensor, intact: torch.Tensor | None) -> None:
        norm = torch.linalg.vector_norm(p)
        too_large = norm > self.max_weight_norm
        if intact is not None:
            too_large = too_large & intact
        p.mul_(torch.where(too_large, self.max_weight_norm / norm, torch.ones_like(norm)))

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none)

    def add_param_group(self, param_group: dict) -> None:
        self.optimizer.add_param_group(param_group)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.optimizer.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"HAM(alpha={self.alpha:g}, beta={self.beta:g}, {self.optimizer!r})"


def check_ham(
    alpha: float,
    beta: float,
    max_exponent: float | None = 5.0,
    max_weight_norm: float | None = 1000.0,
) -> None:
    if not alpha >= 0:
        raise ConfigError(f"alpha={alpha!r} is invalid: must be >= 0")
    if not beta >= 0:
        raise ConfigError(f"beta={beta!r} is invalid: must be >= 0")
    if max_exponent is not None and not max_exponent > 0:
        raise ConfigError(f"max_exponent={max_exponent!r} is invalid: must be > 0 or null")
    if max_weight_norm is not None and not max_weight_norm > 0:
        raise ConfigError(f"max_weight_norm={max_weight_norm!r} is invalid: must be > 0 or null")
