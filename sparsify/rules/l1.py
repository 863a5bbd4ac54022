"""Explicit L1 penalties, the comparisons of Mask in the Mirror (ICLR 2025): λ‖θ‖₁ on the
effective weights, or λ‖m‖₁ on the mask factor m of θ = m ⊙ w only.

The penalty's (sub)gradient is added to the gradients after the backward pass, just before the
optimizer step, so it works with any model and optimizer and leaves the reported loss alone.
sign(0) = 0 is the subgradient taken at 0.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsify.errors import ConfigError
from sparsify.reparam import PointwiseProduct, prunable_layers, weight_parametrization
from sparsify.rules.base import LayerRule, Run
from sparsify.state import factors

TARGETS = ("theta", "m")


class L1Penalty(LayerRule):
    """Add the gradient of ``strength · ‖x‖₁`` before every optimizer step, x being

    - ``on="theta"``: the effective weight θ of every prunable layer (m ⊙ w ⊙ mask, w ⊙ mask or
      the plain weight; the gradient flows through the parametrization: λ·sign(θ)·w into m,
      λ·sign(θ)·m into w for θ = m ⊙ w);
    - ``on="m"``: the factor m of every reparametrized weight (masked entries excluded):
      λ·sign(m) into m, w untouched.

    ``include``/``exclude`` select layers as in ``sparsify.reparametrize``. Logs ``l1/penalty``
    (the value of the penalty). Stateless, so nothing to resume.

    Args:
        strength: λ, the constant strength of the penalty.
        on: ``"theta"`` (the effective weights) or ``"m"`` (the factor m of ``m ⊙ w``).
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
    """

    def __init__(
        self,
        strength: float,
        on: str = "theta",
        include: list | None = None,
        exclude: list | None = None,
    ):
        if not strength >= 0:
            raise ConfigError(f"strength={strength!r} is invalid: must be >= 0")
        if on not in TARGETS:
            raise ConfigError(f"on={on!r} is invalid: choose one of {', '.join(TARGETS)}")
        self.strength, self.on = float(strength), on
        self.include, self.exclude = include, exclude

    def attach(self, run: Run) -> None:
        if not self.penalized(run.model):
            what = "prunable layers" if self.on == "theta" else "reparametrized m, w"
            raise ConfigError(
                f"on={self.on!r} is invalid for this module: it has no {what} selected "
                + ("" if self.on == "theta" else "(add the Reparametrize callback)")
            )

    def penalized(self, module: nn.Module) -> list[tuple[nn.Module, torch.Tensor | None]]:
        """``(layer, mask)`` of the selected layers: every prunable layer for ``theta``, the
        reparametrized ones (with their mask) for ``m``."""
        layers = []
        for _, layer in prunable_layers(module, self.layers(module)):
            product = weight_parametrization(layer, PointwiseProduct)
            if self.on == "theta":
                layers.append((layer, None))
            elif product is not None:
                layers.append((layer, product.mask))
        return layers

    def before_optimizer_step(self, run: Run) -> dict[str, torch.Tensor] | None:
        """Add the penalty's gradient to the parameters the optimizer of ``run`` steps."""
        in_optimizer = {
            id(p) for opt in run.optimizers for g in opt.param_groups for p in g["params"]
        }
        # Lightning runs this event inside ``optimizer.step``, where autograd is off.
        with torch.enable_grad():
            terms, inputs = [], []
            for layer, mask in self.penalized(run.model):
                if self.on == "theta":
                    terms.append(layer.weight.abs().sum())
                    inputs += [p for p in layer.parameters() if id(p) in in_optimizer]
                else:
                    m, _ = factors(layer)
                    terms.append((m * mask).abs().sum())
                    inputs += [m] if id(m) in in_optimizer else []
            if not inputs:
                return None
            penalty = self.strength * torch.stack(terms).sum()
            grads = torch.autograd.grad(penalty, inputs, allow_unused=True)
        for p, g in zip(inputs, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)
        return {"l1/penalty": penalty.detach()}
