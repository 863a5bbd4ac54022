"""Learned soft masks that end as hard ones: STR and continuous sparsification (CS).

Both are ``torch.nn.utils.parametrize`` parametrizations of a weight ``w``:

- ``SoftThreshold`` (STR; Kusupati et al., "Soft Threshold Weight Reparameterization for
  Learnable Sparsity", ICML 2020): θ = sign(w) · relu(|w| − g(s)) ⊙ mask with g = sigmoid and
  one learned threshold parameter s per layer. Weights below the threshold are exactly 0.
- ``SigmoidMask`` (CS; Savarese et al., "Winning the Lottery with Continuous Sparsification",
  NeurIPS 2020): θ = w ⊙ σ(τ s) / σ(τ₀ s₀) ⊙ mask with one learned score s per weight and a
  temperature τ that grows during training, so σ(τ s) tends to the step 1[s > 0]. Dividing by
  σ(τ₀ s₀), the soft mask's value at installation, leaves θ = w at the start, as in the
  authors' code. ``binarize_`` turns it into the authors' ticket mask, θ = w ⊙ 1[s > 0] /
  σ(τ₀ s₀): the factor stays outside the trained w, as there.

Both subclass ``sparsify.reparam.Mask``: they carry the usual 0/1 ``mask`` buffer, so every
sparsify function (``masks``, ``magnitude_prune``, ``add_masks``, ``collapse``,
``match_structure``) treats the weight as a masked weight. ``harden`` replaces them by a plain
``Mask`` with exact zeros: STR keeps θ and masks θ = 0; CS binarizes the soft mask to s > 0.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsify.errors import ConfigError
from sparsify.reparam import Mask, PointwiseProduct, prunable_layers, weight_parametrization
from sparsify.state import own_class, register, unmasked_weight


class SoftThreshold(Mask):
    """θ = sign(w) · relu(|w| − sigmoid(s)) ⊙ mask, with a learned scalar ``threshold`` s."""

    def __init__(self, shape: torch.Size, s_init: float = -5.0, mask: torch.Tensor | None = None):
        super().__init__(shape, mask)
        self.threshold = nn.Parameter(torch.tensor(float(s_init)))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.sign(w) * torch.relu(w.abs() - torch.sigmoid(self.threshold)) * self.mask

    @torch.no_grad()
    def hardened(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, mask) of the plain ``Mask`` with the same θ: w ← θ, mask ← θ ≠ 0."""
        theta = self.forward(w)
        return theta, (theta != 0).to(theta.dtype)


class SigmoidMask(Mask):
    """θ = w ⊙ σ(τ · s) / σ(τ₀ · s₀) ⊙ mask, with learned ``scores`` s (one per weight) and the
    temperature τ in the ``temperature`` buffer (set by the caller, e.g. once per epoch).

    After ``binarize_`` (the ``binary`` buffer is true) θ = w ⊙ mask / σ(τ₀ · s₀) with the mask
    1[s > 0]: the limit τ → ∞, the scale still outside w, and the scores get zero gradients."""

    def __init__(
        self,
        shape: torch.Size,
        s_init: float = 0.0,
        temperature: float = 1.0,
        mask: torch.Tensor | None = None,
    ):
        super().__init__(shape, mask)
        self.scores = nn.Parameter(torch.full(shape, float(s_init)))
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("scale", 1 / torch.sigmoid(torch.tensor(temperature * s_init)))
        self.register_buffer("binary", torch.tensor(False))

    def soft_mask(self) -> torch.Tensor:
        return torch.sigmoid(self.temperature * self.scores)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # A select rather than a Python branch: no host synchronization on the flag.
        soft = torch.where(self.binary, torch.ones_like(self.scores), self.soft_mask())
        return w * soft * self.scale * self.mask

    @torch.no_grad()
    def binarize_(self) -> None:
        """mask ← mask ⊙ 1[s > 0] and θ = w ⊙ mask / σ(τ₀ s₀) from now on (the ticket's mask)."""
        self.mask.mul_((self.scores > 0).to(self.mask.dtype))
        self.binary.fill_(True)

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        # A checkpoint written without the flag holds a soft mask.
        state_dict.setdefault(prefix + "binary", torch.tensor(False))
        super()._load_from_state_dict(state_dict, prefix, *args)

    @torch.no_grad()
    def hardened(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, mask) of the binarized θ = w / σ(τ₀ s₀) ⊙ 1[s > 0] ⊙ mask: the limit τ → ∞."""
        mask = (self.scores > 0).to(w.dtype) * self.mask
        return w * self.scale * mask, mask


SOFT_MASKS = (SoftThreshold, SigmoidMask)


def soft_masks(module: nn.Module, kind: type = Mask) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(layer name, parametrization)`` for every weight parametrized by ``kind``."""
    for name, layer in module.named_modules():
        p = weight_parametrization(layer, kind)
        if isinstance(p, SOFT_MASKS):
            yield name, p


def soft_threshold(
    module: nn.Module,
    s_init: float = -5.0,
    include: Iterable | None = None,
    exclude: Iterable | None = None,
) -> list[str]:
    """Parametrize each selected weight by STR's ``SoftThreshold`` (see the module docstring)."""
    return _install(module, lambda w, mask: SoftThreshold(w.shape, s_init, mask), include, exclude)


def sigmoid_mask(
    module: nn.Module,
    s_init: float = 0.0,
    temperature: float = 1.0,
    include: Iterable | None = None,
    exclude: Iterable | None = None,
) -> list[str]:
    """Parametrize each selected weight by CS's ``SigmoidMask`` (see the module docstring)."""
    if not temperature > 0:
        raise ConfigError(f"temperature={temperature!r} is invalid: must be > 0")
    return _install(
        module, lambda w, mask: SigmoidMask(w.shape, s_init, temperature, mask), include, exclude
    )


def _install(module: nn.Module, make, include, exclude) -> list[str]:
    """Register ``make(weight, mask)`` on every selected weight, keeping an existing ``Mask``'s
    mask. Idempotent: weights that already carry a soft mask are left alone."""
    names = []
    for name, layer in list(prunable_layers(module, include, exclude)):
        existing = weight_parametrization(layer)
        if isinstance(existing, SOFT_MASKS):
            continue
        if isinstance(existing, PointwiseProduct):
            raise ConfigError(
                f"layer {name!r} is reparametrized as m ⊙ w: a soft mask (STR, CS) needs a plain "
                "weight; use one or the other"
            )
        mask = None
        if existing is not None:
            mask = existing.mask.detach().clone()
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        weight = layer.weight
        soft = make(weight, mask).to(weight.device, weight.dtype)
        register(layer, "weight", soft)
        names.append(f"{name}.weight" if name else "weight")
    return names


@torch.no_grad()
def harden(module: nn.Module) -> list[str]:
    """Replace every soft mask by a plain ``Mask`` with exact zeros, in place; return the layers.

    The weight parameter stays the same object (an optimizer holding it keeps working); the
    soft mask's own parameters (threshold, scores) leave the model.
    """
    names = []
    for name, layer in list(module.named_modules()):
        soft = weight_parametrization(layer)
        if not isinstance(soft, SOFT_MASKS):
            continue
        weight, mask = soft.hardened(unmasked_weight(layer))
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        layer.weight.copy_(weight)
        register(layer, "weight", Mask(mask.shape, mask))
        names.append(name)
    return names


def hardened_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with every soft mask hardened (``harden``); ``module`` unchanged.

    Each soft-masked layer of the copy gets a class of its own first (``own_class``): the copy
    shares ``parametrize``'s class with the original, and hardening it in place would delete
    the original's ``weight``."""
    hard = copy.deepcopy(module)
    for name, _ in list(soft_masks(hard)):
        own_class(hard.get_submodule(name))
    harden(hard)
    return hard
