"""Sign-In's sign flips: their measurement and the rescale schedule that causes them (Sign-In to
the Lottery, NeurIPS 2025; docs/pai.md, "Sign-In").

Sign-In trains the kept weights of a sparse mask as θ = m ⊙ w with inner scale β = m² − w² = 1
and re-splits θ every p epochs (``sparsify.reparam.rescale_``), so that weights keep crossing
zero. These functions watch that happen on the reparametrized layers of a model: the signs of
θ, the fraction of them that flipped since a reference, and the mean inner scale. The schedule of
the rescales and their reference signs is the rule ``sparsify.rules.SignIn``.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsify.reparam import layer_masks, pointwise_factors


def _kept_factors(module: nn.Module):
    """``(layer name, m, w, mask)`` for every reparametrized layer."""
    live = layer_masks(module)
    for name, m, w in pointwise_factors(module):
        layer = name.removesuffix(".weight") if name != "weight" else ""
        yield layer, m, w, live[layer]


@torch.no_grad()
def signs(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{layer: sign(m ⊙ w ⊙ mask)}`` as int8 (−1, 0, +1) of every reparametrized layer."""
    return {
        layer: torch.sign(m * w * mask).to(torch.int8)
        for layer, m, w, mask in _kept_factors(module)
    }


@torch.no_grad()
def sign_flips(module: nn.Module, reference: dict[str, torch.Tensor]) -> float:
    """The fraction of kept weights whose sign differs from ``reference`` (from ``signs``).

    Counted over the weights that are kept now and non-zero both now and in the reference, so
    a weight pruned or grown since (a changing mask, as in RiGL or AC/DC) is not a flip.
    """
    return flip_fraction(signs(module), reference)


def flip_fraction(now: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    """The fraction of entries non-zero in both ``now`` and ``reference`` (``{layer: signs}``)
    whose signs differ."""
    flipped = counted = 0
    for layer, sign in now.items():
        if layer not in reference:
            continue
        ref = reference[layer].to(sign.device)
        both = (sign != 0) & (ref != 0)
        flipped += int((both & (sign != ref)).sum())
        counted += int(both.sum())
    return flipped / counted if counted else 0.0


@torch.no_grad()
def inner_scale(module: nn.Module) -> float:
    """The mean of m² − w² over the kept weights of every reparametrized layer."""
    total, count = 0.0, 0
    for _, m, w, mask in _kept_factors(module):
        kept = mask != 0
        total += float((m[kept] ** 2 - w[kept] ** 2).sum())
        count += int(kept.sum())
    return total / count if count else 0.0
