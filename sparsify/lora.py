"""Low-rank adapters (LoRA, Hu et al. 2022): y = W x + (α/r) · B A x on chosen linear layers,
with the base weights frozen.

The Mirror, Mirror of the Flow paper studies the factorization B A like m ⊙ w: weight decay on
B and A moves its implicit bias towards low rank (a nuclear-norm penalty on B A), and that move
lasts after the weight decay is switched off.

Adapters are found by name. ``add_lora`` replaces each chosen ``nn.Linear`` by a ``LoRALinear``
holding the original layer as ``base`` and the factors as the ``nn.Linear`` layers ``lora_A``
(in → r) and ``lora_B`` (r → out). So:

- sparsify's LightningModules put the adapter parameters in their own optimizer group ``lora``
  (``WeightDecaySwitchOff(groups=["lora"])`` switches off exactly their weight decay);
  in your own module, build that group from ``lora_parameters(model)``;
- ``reparametrize(model, include=["*.lora_A", "*.lora_B"])`` makes A and B themselves
  θ = m ⊙ w, and the m ⊙ w callbacks (PILoT, the ``pointwise`` group) act on them;
- ``merge_lora`` (after training) puts ``W + (α/r) · B A`` back into plain ``nn.Linear`` layers:
  the exported model has the original architecture and state-dict keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from sparsify.errors import ConfigError
from sparsify.reparam import prunable_layers


class LoRALinear(nn.Module):
    """``base(x) + scaling · lora_B(lora_A(x))``, scaling = α / r. A starts like an ``nn.Linear``
    (Kaiming uniform), B at zero, so the layer computes ``base(x)`` until B has trained."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        weight = base.weight
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        self.lora_A.to(weight.device, weight.dtype)
        self.lora_B.to(weight.device, weight.dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight W + scaling · B A (effective weights, so masks and
        m ⊙ w of the base or of the factors are multiplied in) and the base's bias."""
        base = self.base
        layer = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
        layer.to(base.weight.device, base.weight.dtype)
        layer.weight.copy_(base.weight + self.scaling * self.lora_B.weight @ self.lora_A.weight)
        if base.bias is not None:
            layer.bias.copy_(base.bias)
            layer.bias.requires_grad_(base.bias.requires_grad)
        layer.weight.requires_grad_(_requires_grad(base))
        return layer


def _requires_grad(base: nn.Linear) -> bool:
    return any(p.requires_grad for name, p in base.named_parameters() if "weight" in name)


def add_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float | None = None,
    include: Iterable | None = None,
    exclude: Iterable | None = None,
    freeze: bool = True,
) -> list[str]:
    """Wrap the selected ``nn.Linear`` layers of ``model`` in ``LoRALinear`` adapters.

    Args:
        rank: r, the inner dimension of B A.
        alpha: α of the scaling α / r; defaults to ``rank`` (scaling 1).
        include / exclude: module-name patterns (fnmatch, e.g. ``"*.attn.q"``) or module types,
            as for ``reparametrize``; by default every ``nn.Linear``.
        freeze: set ``requires_grad=False`` on every parameter of ``model`` that is not an
            adapter factor, so only A and B train.

    Layers already adapted are left alone. Returns the names of the adapted layers.
    """
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ConfigError(f"rank={rank!r} is invalid: must be an integer >= 1")
    alpha = float(rank if alpha is None else alpha)
    if not alpha > 0:
        raise ConfigError(f"alpha={alpha!r} is invalid: must be > 0")
    adapted = [name for name, _ in lora_layers(model)]
    chosen = []
    selectors = [nn.Linear] if include is None else include
    for name, layer in prunable_layers(model, selectors, exclude):
        if any(name == a or name.startswith(f"{a}.") for a in adapted):
            continue
        if not isinstance(layer, nn.Linear):
            raise ConfigError(
                f"include={include!r} is invalid: it selects {name!r}, a "
                f"{type(layer).__name__}; LoRA adapts nn.Linear layers only"
            )
        if not name:
            raise ConfigError("model is a single nn.Linear: wrap it in a module to adapt it")
        chosen.append(name)
    if not chosen and not adapted:
        raise ConfigError(f"include={include!r} is invalid: it selects no nn.Linear layer")
    for name in chosen:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, LoRALinear(getattr(owner, child), rank, alpha))
    if freeze:
        adapters = {id(p) for _, p in lora_parameters(model)}
        for p in model.parameters():
            p.requires_grad_(id(p) in adapters)
    return chosen


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """Yield ``(name, layer)`` for every ``LoRALinear`` in ``model``."""
    for name, layer in model.named_modules():
        if isinstance(layer, LoRALinear):
            yield name, layer


def lora_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Yield ``(name, parameter)`` for every adapter factor: the weights of ``lora_A`` and
    ``lora_B``, or their m and w where they are reparametrized."""
    for name, layer in lora_layers(model):
        for factor in ("lora_A", "lora_B"):
            for pname, p in getattr(layer, factor).named_parameters():
                yield f"{name}.{factor}.{pname}", p


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every ``LoRALinear`` by a plain ``nn.Linear`` with W + (α/r) · B A, in place.
    The merged layers keep the base's ``requires_grad``; call ``collapse`` as well to multiply
    out the parametrizations of other layers before exporting."""
    for name, layer in list(lora_layers(model)):
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, layer.merged())
    return model
