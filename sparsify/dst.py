"""Dynamic sparse training: the mask changes during training (docs/pai.md, "AC/DC and RiGL").

- **RiGL** (Evci et al., "Rigging the Lottery", ICML 2020): every ΔT steps each layer drops
  its k smallest |θ| among the kept weights and grows the k largest |∂L/∂θ| among the others,
  k = f_t · (kept weights), with the cosine-decayed fraction f_t = f₀ (1 + cos(π t / T_end)) / 2.
  Grown weights start at 0.
- **AC/DC** (Peste et al., "Alternating Compressed/DeCompressed Training", NeurIPS 2021): a
  dense warm-up, then compressed (magnitude-masked) and dense phases in turn, and a final
  compressed phase. Weights return from a compressed phase at 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from sparsify.masks import select_mask
from sparsify.reparam import PointwiseProduct, weight_parametrization
from sparsify.schedules import cosine
from sparsify.state import factors, unmasked_weight

PHASES = ("dense", "compressed")


def rigl_fraction(step: float, initial: float, end: float) -> float:
    """f_t = ``initial`` · (1 + cos(π t / end)) / 2 until step ``end``, then 0."""
    return initial * cosine(step, end) if step < end else 0.0


@torch.no_grad()
def rigl_masks(
    weights: dict[str, torch.Tensor],
    grads: dict[str, torch.Tensor],
    current: dict[str, torch.Tensor],
    fraction: float,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    pattern: str = "unstructured",
    transposed: Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """RiGL's drop-and-grow, per layer: the new 0/1 masks, each keeping as many weights as
    ``current``. Drops the ``floor(fraction · kept)`` smallest scores |θ| + N(0, noise_std²)
    among the kept weights and grows as many of the largest |g| among the weights not kept after
    the drop (a dropped weight may come back). No more are updated than there are weights
    outside the mask. The noise (drawn on the CPU from ``generator``, layer by layer in the order
    of ``current``, for the layers that update) breaks ties among equal magnitudes at random, as
    the reference does (google-research/rigl, ``generic_mask_update``: standard deviation 1e-5).

    Both steps go through ``select_mask``: the drop keeps the highest scores among the non-zero
    θ, so a kept weight that is exactly 0 is never kept by tie order; the growth is its stated
    regrowth rule, |g| over every weight that is 0 after the drop (which refills such a weight's
    place too).

    With ``pattern="n:m"`` (``transposed``: the layers stored (in, out); see ``select_mask``),
    ``current`` is expected to be N:M already; a weight grows only where its group of m keeps
    fewer than n after the drop, so the masks stay N:M and every layer keeps its count.
    """
    theta = {name: weights[name] * (current[name] != 0) for name in current}
    after_drop_density, density, magnitude = {}, {}, {}
    for name, mask in current.items():
        n_kept = int((mask != 0).sum())
        k = min(math.floor(fraction * n_kept), mask.numel() - n_kept)
        after_drop_density[name] = (n_kept - k) / mask.numel()
        density[name] = n_kept / mask.numel()
        magnitude[name] = theta[name].abs()
        if k > 0 and noise_std > 0:
            noise = torch.randn(mask.shape, generator=generator, dtype=magnitude[name].dtype)
            magnitude[name] = magnitude[name] + noise_std * noise.to(magnitude[name].device)
    structure = {"pattern": pattern, "transposed": transposed}
    survivors = select_mask(magnitude, theta, densities=after_drop_density, **structure)
    after_drop = {name: theta[name] * survivors[name] for name in theta}
    growth = {name: grads[name].abs() for name in theta}
    new = select_mask(growth, after_drop, densities=density, regrow=growth, **structure)
    return {name: new[name].to(current[name].dtype) for name in current}


def acdc_phase(
    epoch: int, total: int, warmup: int, length: int, final: int, last_dense: int = 0
) -> str:
    """AC/DC's phase of ``epoch`` (0-based) of ``total``: ``dense`` for the first ``warmup``
    epochs, then ``compressed`` and ``dense`` in turn, ``length`` epochs each, a last ``dense``
    phase of ``last_dense`` epochs and ``compressed`` for the last ``final`` epochs."""
    if epoch >= total - final:
        return "compressed"
    if epoch < warmup or epoch >= total - final - last_dense:
        return "dense"
    return PHASES[1 - ((epoch - warmup) // length) % 2]


@torch.no_grad()
def restart_(
    module: nn.Module,
    positions: dict[str, torch.Tensor],
    optimizers: list[torch.optim.Optimizer] = (),
) -> None:
    """Set the effective weight θ to 0 at ``positions`` (``{layer: bool tensor}``) and clear the
    optimizers' state there (momentum, Adam moments), leaving every other entry unchanged.

    A masked weight keeps its stored value (and its momentum may keep moving it); this makes a
    weight that enters the mask start from 0. For θ = m ⊙ w the split is m = sqrt(β), w = 0,
    so m² − w² stays the layer's β.
    """
    layers = dict(module.named_modules())
    for name, where in positions.items():
        layer = layers[name]
        product = weight_parametrization(layer)
        if product is None:
            params = [(layer.weight, 0.0)]
        elif isinstance(product, PointwiseProduct):
            m, w = factors(layer)
            params = [(m, math.sqrt(product.beta)), (w, 0.0)]
        else:
            params = [(unmasked_weight(layer), 0.0)]
        where = where.to(device=params[0][0].device, dtype=torch.bool)
        for param, value in params:
            param.masked_fill_(where, value)
            for optimizer in optimizers:
                for state in optimizer.state.get(param, {}).values():
                    if isinstance(state, torch.Tensor) and state.shape == param.shape:
                        state.masked_fill_(where, 0.0)
