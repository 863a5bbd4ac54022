"""Masks on prunable weights, magnitude pruning and sparsity reporting.

Masks are the 0/1 buffers of the parametrizations in ``sparsify.reparam``; setting a mask makes
the masked entries of the effective weight θ exactly 0. Every count here is of θ, the weight
the forward pass uses (m ⊙ w ⊙ mask for reparametrized layers).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sparsify.errors import ConfigError
from sparsify.reparam import add_masks, masks, prunable_layers

SCOPES = ("global", "layer")


def check_sparsity(sparsity: float) -> float:
    if not 0 <= sparsity < 1:
        raise ConfigError(f"sparsity={sparsity!r} is invalid: must be in [0, 1)")
    return float(sparsity)


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ConfigError(f"scope={scope!r} is invalid: choose one of {', '.join(SCOPES)}")
    return scope


@torch.no_grad()
def sparsity_report(
    module: nn.Module, include: Iterable | None = None, exclude: Iterable | None = None
) -> dict:
    """``{"global": zero fraction over all prunable θ, "layers": {name: zero fraction}}``."""
    zeros = total = 0
    layers = {}
    for name, layer in prunable_layers(module, include, exclude):
        theta = layer.weight
        layer_zeros = int((theta == 0).sum())
        layers[name] = layer_zeros / theta.numel()
        zeros += layer_zeros
        total += theta.numel()
    return {"global": zeros / total if total else 0.0, "layers": layers}


def keep_largest(scores: dict[str, torch.Tensor], sparsity: float, scope: str = "global"):
    """0/1 masks keeping the largest scores: ``round((1 − sparsity) · n)`` entries of the ``n``
    scored weights overall (``scope="global"``) or of each layer (``scope="layer"``)."""
    check_sparsity(sparsity)
    check_scope(scope)
    if scope == "layer":
        return {name: _keep_top(s.flatten(), sparsity).view_as(s) for name, s in scores.items()}
    flat = torch.cat([s.detach().flatten().float() for s in scores.values()])
    keep = _keep_top(flat, sparsity)
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = keep[start : start + s.numel()].view_as(s).to(s.dtype)
        start += s.numel()
    return out


def _keep_top(flat: torch.Tensor, sparsity: float) -> torch.Tensor:
    n_keep = round((1 - sparsity) * flat.numel())
    keep = torch.zeros_like(flat)
    if n_keep > 0:
        keep[torch.topk(flat, n_keep, sorted=False).indices] = 1
    return keep


@torch.no_grad()
def set_masks(module: nn.Module, new_masks: dict[str, torch.Tensor]) -> None:
    """Copy 0/1 tensors into the mask buffers of the named layers (adding masks if needed)."""
    add_masks(module, include=list(new_masks))
    live = masks(module)
    for name, mask in new_masks.items():
        live[name].copy_(mask)


@torch.no_grad()
def magnitude_prune(
    module: nn.Module,
    sparsity: float,
    scope: str = "global",
    include: Iterable | None = None,
    exclude: Iterable | None = None,
) -> dict[str, torch.Tensor]:
    """Mask the smallest |θ| so the selected weights reach ``sparsity`` (globally or per layer).

    Works on plain and reparametrized models; returns the new masks by layer name.
    """
    check_sparsity(sparsity)
    check_scope(scope)
    scores = {name: layer.weight.abs() for name, layer in prunable_layers(module, include, exclude)}
    if not scores:
        raise ConfigError("magnitude_prune found no prunable layers (conv or linear) to prune")
    new_masks = keep_largest(scores, sparsity, scope)
    set_masks(module, new_masks)
    return new_masks
