"""HAM: Hyperbolic Aware Minimization, a multiplicative step after any optimizer's step.

The authors' follow-up to "Mask in the Mirror" (Hyperbolic Aware Minimization, ICLR 2026; see
METHODS.md §6) gets the hyperbolic geometry of θ = m ⊙ w without doubling the parameters: after
each ordinary optimizer step, every weight tensor θ with at least 2 dimensions is multiplied
elementwise by

    exp(lr · (−α · sign(θ) ⊙ ∇L(θ) − β))

with the learning rate lr of its param group (published defaults α = 200, β = 1e-3). Biases and
norm parameters (fewer than 2 dimensions) are left as the optimizer made them. A factor below 1
shrinks |θ|, so a weight the gradient pushes towards 0 goes there geometrically, and β decays
every weight a little: an implicit L1 bias. sign(θ) is taken after the ordinary step (the
multiplication cannot change a sign, so it acts on the θ that it multiplies); ∇L(θ) is the
parameter's ``.grad`` (the loss gradient; decoupled or optimizer-internal weight decay does not
enter it).
"""

from __future__ import annotations

import torch

from sparsify.errors import ConfigError


class HAM(torch.optim.Optimizer):
    """Wrap ``optimizer``: ``step`` runs its step, then the multiplicative HAM step.

    The wrapper shares the wrapped optimizer's ``param_groups``, ``state`` and ``defaults``
    (learning-rate schedulers built on either keep working) and its ``state_dict`` is the wrapped
    optimizer's, so checkpoints load with or without HAM. ``alpha`` and ``beta`` are the α and β
    of the formula in the module docstring.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, alpha: float = 200.0, beta: float = 1e-3):
        if isinstance(optimizer, HAM):
            raise ConfigError("optimizer is invalid: it is already wrapped by HAM")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(f"optimizer={optimizer!r} is invalid: need a torch.optim.Optimizer")
        check_ham(alpha, beta)
        # No Optimizer.__init__: it would copy the param groups instead of sharing them.
        self.optimizer = optimizer
        self.alpha, self.beta = float(alpha), float(beta)

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
        """θ ← θ ⊙ exp(lr · (−α · sign(θ) ⊙ ∇L(θ) − β)) for every θ with ≥ 2 dims and a grad."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.ndim >= 2 and p.grad is not None]
            if not params:
                continue
            lr = float(group["lr"])
            factors = torch._foreach_sign(params)
            torch._foreach_mul_(factors, [p.grad for p in params])
            torch._foreach_mul_(factors, -self.alpha * lr)
            torch._foreach_add_(factors, -self.beta * lr)
            torch._foreach_exp_(factors)
            torch._foreach_mul_(params, factors)

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


def check_ham(alpha: float, beta: float) -> None:
    if not alpha >= 0:
        raise ConfigError(f"alpha={alpha!r} is invalid: must be >= 0")
    if not beta >= 0:
        raise ConfigError(f"beta={beta!r} is invalid: must be >= 0")
