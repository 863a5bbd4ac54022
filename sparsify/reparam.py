"""The pointwise product θ = m ⊙ w (⊙ mask), registered with ``torch.nn.utils.parametrize``.

Gradient descent on (m, w) follows the mirror flow dθ = −sqrt(4θ² + β²) ⊙ ∇L(θ) dt with the
inner scale β = m² − w² (Mask in the Mirror, ICLR 2025; Sign-In to the Lottery, NeurIPS 2025).
β = 1 is the PILoT / Sign-In initialization, β = 0 the balanced spred split.

A prunable weight carries at most one parametrization from this module: ``PointwiseProduct``
(trainable m, w and a 0/1 mask buffer) or ``Mask`` (the original weight and a mask buffer).
Masks are buffers of the model, so they are in every ``state_dict`` and checkpoint.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsify.errors import ConfigError
from sparsify.state import (
    factors,
    masked_layers,
    own_class,
    parametrizations,
    pointwise_layers,
    register,
    restore_state_dict,
)

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prunable_types() -> tuple[type, ...]:
    """``PRUNABLE_TYPES`` and, once ``transformers`` is imported, its ``Conv1D`` (GPT-2's linear
    layer, weight stored in × out). Nothing is imported here: a model holding a ``Conv1D`` has
    imported ``transformers`` already."""
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)
    return PRUNABLE_TYPES if conv1d is None else (*PRUNABLE_TYPES, conv1d)


def is_transposed(layer: nn.Module) -> bool:
    """Whether ``layer`` stores its weight as (in, out), as ``transformers``' ``Conv1D`` does,
    rather than (out, in) like ``nn.Linear``."""
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)
    return conv1d is not None and isinstance(layer, conv1d)


def split(theta: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """m = sqrt((β + sqrt(β² + 4θ²)) / 2), w = θ / m, so that m ⊙ w = θ and m² − w² = β.

    For β = 0 and θ = 0 both factors are 0 (the balanced split |m| = |w| = sqrt|θ|).
    """
    m = torch.sqrt((beta + torch.sqrt(beta**2 + 4 * theta**2)) / 2)
    w = torch.where(m > 0, theta / m.clamp_min(torch.finfo(theta.dtype).tiny), torch.zeros_like(m))
    return m, w


class PointwiseProduct(nn.Module):
    """θ = m ⊙ w ⊙ mask. ``right_inverse`` splits θ with inner scale ``beta``
    (docs/methods.md, "θ = m ⊙ w and its implicit bias")."""

    def __init__(self, shape: torch.Size, beta: float = 1.0, mask: torch.Tensor | None = None):
        super().__init__()
        check_beta(beta)
        self.beta = float(beta)
        self.register_buffer("mask", torch.ones(shape) if mask is None else mask.detach().clone())

    def forward(self, m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return m * w * self.mask

    def right_inverse(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return split(theta * self.mask, self.beta)


class Mask(nn.Module):
    """θ = w ⊙ mask, for a weight that is masked but not reparametrized."""

    def __init__(self, shape: torch.Size, mask: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape) if mask is None else mask.detach().clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask

    def right_inverse(self, theta: torch.Tensor) -> torch.Tensor:
        return theta


def check_beta(beta: float) -> None:
    if not beta >= 0:
        raise ConfigError(f"beta={beta!r} is invalid: the inner scale must be >= 0")


def _matches(name: str, layer: nn.Module, selectors: Iterable) -> bool:
    for sel in selectors:
        if isinstance(sel, type) and isinstance(layer, sel):
            return True
        if isinstance(sel, str) and fnmatch.fnmatchcase(name, sel):
            return True
    return False


@dataclass(frozen=True)
class LayerSelection:
    """Layers named exactly: ``include``/``exclude`` resolved once on a model (``of``).

    Every function that takes ``include`` takes one, and then looks the layers up by name instead
    of matching patterns and module types again, so a rule prunes, regrows and reports on the
    layers it chose when training started.
    """

    names: tuple[str, ...]

    @classmethod
    def of(
        cls, module: nn.Module, include: Iterable | None = None, exclude: Iterable | None = None
    ) -> LayerSelection:
        return cls(tuple(name for name, _ in prunable_layers(module, include, exclude)))


def prunable_layers(
    module: nn.Module,
    include: Iterable | LayerSelection | None = None,
    exclude: Iterable | None = None,
) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(name, layer)`` for every conv/linear layer, or those selected.

    ``include``/``exclude`` hold module-name patterns (fnmatch, e.g. ``"fc"``, ``"layer1.*"``)
    or module types; ``include`` may also be a ``LayerSelection``, the exact names. ``include``
    defaults to every ``nn.Conv1d/2d/3d``, ``nn.Linear`` and ``transformers``' ``Conv1D``. A
    layer whose weight is shared with another module (a language model's head tied to its token
    embedding) is never selected: a mask or m ⊙ w on it would untie the two.
    """
    exclude = list(exclude or [])
    if isinstance(include, LayerSelection):
        for name in include.names:
            layer = module.get_submodule(name)
            if not _matches(name, layer, exclude):
                yield name, layer
        return
    include = list(include) if include is not None else None
    types = prunable_types()
    tied = _tied_layers(module)
    for name, layer in module.named_modules():
        if include is None:
            selected = isinstance(layer, types)
        else:
            selected = _has_weight(layer) and _matches(name, layer, include)
        if selected and id(layer) not in tied and not _matches(name, layer, exclude):
            yield name, layer


def _tied_layers(module: nn.Module) -> set[int]:
    """The ids of the modules whose ``weight`` parameter another module also holds."""
    holders: dict[int, list[int]] = {}
    for layer in module.modules():
        weight = layer._parameters.get("weight")
        if weight is not None:
            holders.setdefault(id(weight), []).append(id(layer))
    return {layer for ids in holders.values() if len(ids) > 1 for layer in ids}


def _has_weight(layer: nn.Module) -> bool:
    return "weight" in layer._parameters or parametrize.is_parametrized(layer, "weight")


def weight_parametrization(
    layer: nn.Module, kind: type | tuple[type, ...] = (PointwiseProduct, Mask)
) -> nn.Module | None:
    """The sparsify parametrization of ``layer.weight`` (a ``PointwiseProduct``, a ``Mask`` or a
    soft mask, which subclasses ``Mask``) if it is an instance of ``kind``, else ``None``."""
    for p in parametrizations(layer):
        if isinstance(p, (PointwiseProduct, Mask)):
            return p if isinstance(p, kind) else None
    return None


def reparametrize(
    module: nn.Module,
    beta: float = 1.0,
    include: Iterable | None = None,
    exclude: Iterable | None = None,
    mask: dict[str, torch.Tensor] | None = None,
) -> list[str]:
    """Replace each selected weight θ by trainable ``m, w`` with θ = m ⊙ w (⊙ mask).

    ``mask`` maps layer names to 0/1 tensors; masked entries of θ are exactly 0. A weight that
    already carries a ``Mask`` keeps it. Already reparametrized weights are left alone.
    Returns the names of the reparametrized weights (``"layer.weight"``).
    """
    check_beta(beta)
    mask = dict(mask or {})
    names = []
    for name, layer in list(prunable_layers(module, include, exclude)):
        existing = weight_parametrization(layer)
        if isinstance(existing, PointwiseProduct):
            continue
        layer_mask = mask.pop(name, None)
        if isinstance(existing, Mask):
            layer_mask = existing.mask if layer_mask is None else layer_mask
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        theta = layer.weight
        if layer_mask is not None:
            layer_mask = layer_mask.to(device=theta.device, dtype=theta.dtype)
        product = PointwiseProduct(theta.shape, beta, layer_mask).to(theta.device, theta.dtype)
        register(layer, "weight", product)
        names.append(f"{name}.weight" if name else "weight")
    if mask:
        raise ConfigError(f"mask given for unknown or unselected layers: {sorted(mask)}")
    return names


def add_masks(
    module: nn.Module, include: Iterable | None = None, exclude: Iterable | None = None
) -> None:
    """Give every selected weight a mask buffer (all ones) if it has none yet. Idempotent."""
    for _, layer in prunable_layers(module, include, exclude):
        if weight_parametrization(layer) is None:
            weight = layer.weight
            masked = Mask(weight.shape).to(weight.device, weight.dtype)
            register(layer, "weight", masked)


def layer_masks(module: nn.Module) -> dict[str, torch.Tensor]:
    """The mask buffer of every masked or reparametrized layer, by layer name (live tensors)."""
    out = {}
    for name, layer in module.named_modules():
        p = weight_parametrization(layer)
        if p is not None:
            out[name] = p.mask
    return out


def pointwise_factors(module: nn.Module) -> Iterator[tuple[str, nn.Parameter, nn.Parameter]]:
    """Yield ``(name, m, w)`` for every reparametrized weight; m and w are the parameters."""
    for name, layer in module.named_modules():
        if isinstance(weight_parametrization(layer), PointwiseProduct):
            yield (f"{name}.weight" if name else "weight"), *factors(layer)


@torch.no_grad()
def rescale_(module: nn.Module, beta: float = 1.0) -> None:
    """Re-split every θ = m ⊙ w so that m² − w² = β, θ unchanged (Sign-In's reset), in place."""
    check_beta(beta)
    for layer in module.modules():
        product = weight_parametrization(layer)
        if isinstance(product, PointwiseProduct):
            m, w = factors(layer)
            new_m, new_w = split(m * w * product.mask, beta)
            m.copy_(new_m)
            w.copy_(new_w)
            product.beta = float(beta)


def collapse(module: nn.Module) -> nn.Module:
    """Multiply out every parametrization: plain weights equal to m ⊙ w ⊙ mask, in place.

    The result is the original architecture with ordinary ``weight`` parameters; its
    ``state_dict`` loads into a model built without sparsify.
    """
    for _, layer in module.named_modules():
        if weight_parametrization(layer) is not None:
            own_class(layer)
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return module


def match_structure(module: nn.Module, state_dict: dict) -> None:
    """Give ``module`` the masks and m ⊙ w parametrizations that ``state_dict`` was saved with,
    so that a checkpoint of a sparsified model (plain or portable form) loads into a freshly
    built one."""
    state_dict = restore_state_dict(state_dict)
    pointwise, masked = pointwise_layers(state_dict), masked_layers(state_dict)
    if masked:
        add_masks(module, LayerSelection(tuple(masked)))
    if pointwise:
        reparametrize(module, include=LayerSelection(tuple(pointwise)))
