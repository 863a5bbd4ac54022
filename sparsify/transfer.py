"""Sign transfer, the "signs are sufficient" experiment of Sign-In to the Lottery (NeurIPS 2025):
start a sparse run from a mask and the signs of another network with random magnitudes, or its
magnitudes with random signs (docs/pai.md, "Sign transfer").

The other network comes as a ``state_dict`` (a Lightning checkpoint's ``"state_dict"`` or a
plain one), with or without sparsify's masks and m ⊙ w parametrizations: its effective weights
are read as the forward pass would compute them (``sparsify.state.effective_weights``).
"""

from __future__ import annotations

import torch
from torch import nn

from sparsify.errors import ConfigError
from sparsify.reparam import prunable_layers

KEEPS = ("signs", "magnitudes", "both", "none")


def check_keep(keep: str) -> str:
    if keep not in KEEPS:
        raise ConfigError(f"keep={keep!r} is invalid: choose one of {', '.join(KEEPS)}")
    return keep


@torch.no_grad()
def transfer_weights(
    module: nn.Module,
    source: dict[str, torch.Tensor],
    keep: str = "signs",
    include=None,
    exclude=None,
) -> list[str]:
    """Set every selected weight θ of ``module`` from ``source`` (``{layer name: θ_src}``):

    - ``signs``: sign(θ_src) ⊙ |θ|, the source's signs with this model's magnitudes;
    - ``magnitudes``: |θ_src| ⊙ sign(θ), the source's magnitudes with this model's signs;
    - ``both``: θ_src; ``none``: θ unchanged.

    "This model's" is its current (freshly initialized, random) weight, so the random half
    differs with the seed and is the same on every DDP rank. A zero of θ_src or θ counts as +.
    Masks are untouched; reparametrized weights are re-split with their inner scale β.
    Returns the names of the layers set.
    """
    check_keep(keep)
    layers = dict(prunable_layers(module, include, exclude))
    missing = sorted(set(layers) - set(source))
    if missing:
        raise ConfigError(f"the source weights lack layers {missing}: they must match the model")
    if keep == "none":
        return []
    for name, layer in layers.items():
        theta = layer.weight
        src = source[name].to(theta.device, theta.dtype)
        if src.shape != theta.shape:
            raise ConfigError(
                f"layer {name!r} has shape {tuple(theta.shape)} here and {tuple(src.shape)} in "
                "the source: they must match"
            )
        if keep == "signs":
            new = _sign(src) * theta.abs()
        elif keep == "magnitudes":
            new = src.abs() * _sign(theta)
        else:
            new = src.clone()
        _assign(layer, new)
    return list(layers)


def _sign(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t < 0, -1.0, 1.0).to(t.dtype)


def _assign(layer: nn.Module, theta: torch.Tensor) -> None:
    """Set the effective weight: a plain weight is copied, a parametrized one goes through the
    parametrization's ``right_inverse`` (the same parameter objects, so optimizers keep them)."""
    if "weight" in layer._parameters:
        layer.weight.copy_(theta)
    else:
        layer.weight = theta
