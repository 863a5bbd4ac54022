"""Masks on prunable weights, magnitude pruning and sparsity reporting.

Masks are the 0/1 buffers of the parametrizations in ``sparsify.reparam``; setting a mask makes
the masked entries of the effective weight θ exactly 0. Every count here is of θ, the weight
the forward pass uses (m ⊙ w ⊙ mask for reparametrized layers).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
from typing import Literal, NamedTuple, get_args

import torch
from torch import nn

from sparsify.errors import ConfigError, check_choice
from sparsify.reparam import (
    LayerSelection,
    add_masks,
    is_transposed,
    layer_masks,
    prunable_layers,
)

Scope = Literal["global", "layer"]
SCOPES = get_args(Scope)
UNSTRUCTURED = "unstructured"


def check_sparsity(sparsity: float) -> float:
    if not 0 <= sparsity < 1:
        raise ConfigError(f"sparsity={sparsity!r} is invalid: must be in [0, 1)")
    return float(sparsity)


def check_scope(scope: Scope) -> Scope:
    check_choice("scope", scope, Scope)
    return scope


# Under a global magnitude threshold every layer keeps at least this fraction of the density the
# target leaves, 1 − s: without it a layer of small weights can be emptied and cut the network.
LAYER_FLOOR = 0.2


def check_layer_floor(layer_floor: float) -> float:
    if not 0 <= layer_floor <= 1:
        raise ConfigError(f"layer_floor={layer_floor!r} is invalid: must be in [0, 1]")
    return float(layer_floor)


class NMPattern(NamedTuple):
    """An N:M structure: at most ``n`` kept of every ``m`` consecutive weights along a layer's
    input dimension (``select_mask``). ``str()`` gives the spelling of configs, ``"n:m"``."""

    n: int
    m: int

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def sparsity(self) -> float:
        """1 − n/m, the sparsity the pattern alone gives."""
        return 1 - self.n / self.m


def check_pattern(pattern: str | NMPattern | None) -> NMPattern | None:
    """The one parse of a pattern: ``None`` for ``"unstructured"``, ``NMPattern(n, m)`` for
    ``"n:m"`` (integers 1 ≤ n ≤ m). The parsed value is accepted too (``None`` is
    unstructured; an ``NMPattern`` is checked and returned as it is), so a caller that parses
    once passes the result down and nothing parses the string again."""
    if pattern is None or pattern == UNSTRUCTURED:
        return None
    if isinstance(pattern, NMPattern):
        n, m = pattern
        if all(type(v) is int for v in pattern) and 1 <= n <= m:
            return pattern
    elif isinstance(pattern, str):
        parts = pattern.split(":")
        if len(parts) == 2 and all(part.isdigit() for part in parts):
            n, m = int(parts[0]), int(parts[1])
            if 1 <= n <= m:
                return NMPattern(n, m)
    raise ConfigError(
        f"pattern={pattern!r} is invalid: use 'unstructured' or 'n:m' with integers 1 <= n <= m"
        " (e.g. '2:4')"
    )


def _input_rows(tensor: torch.Tensor, transposed: bool) -> torch.Tensor:
    """``tensor`` (a layer's weight shape) as a matrix whose rows run along the input
    dimension: (out, in) for a linear weight, (out · kh · kw, in) for a conv weight
    (out, in, kh, kw), the input channels of every (out, kh, kw) in a row; (out, in) from a
    transposed (in, out) weight. ``_from_input_rows`` undoes it."""
    if transposed:
        return tensor.t()
    if tensor.dim() == 1:
        return tensor[None]
    return tensor.movedim(1, -1).reshape(-1, tensor.shape[1])


def _from_input_rows(rows: torch.Tensor, shape: torch.Size, transposed: bool) -> torch.Tensor:
    if transposed:
        return rows.t()
    if len(shape) <= 2:
        return rows.reshape(shape)
    return rows.reshape(shape[0], *shape[2:], shape[1]).movedim(-1, 1)


def _groups_of(tensor: torch.Tensor, m: int, transposed: bool, name: str) -> torch.Tensor:
    """``tensor`` viewed as (rows, in / m, m): groups of m consecutive input channels in each
    row of ``_input_rows``."""
    rows = _input_rows(tensor, transposed)
    if rows.shape[1] % m:
        raise ConfigError(
            f"an n:{m} pattern is invalid for layer {name!r}: its input dimension {rows.shape[1]} "
            f"is not a multiple of m={m}; exclude the layer or choose m dividing it"
        )
    return rows.reshape(rows.shape[0], -1, m)


def _nm_allowed(
    score: torch.Tensor,
    theta: torch.Tensor,
    regrow: torch.Tensor | None,
    n: int,
    m: int,
    transposed: bool,
    name: str,
) -> torch.Tensor:
    """Bool tensor shaped like ``theta``: in each group of m, the (at most) n entries the N:M
    pattern allows, the highest ``score`` among θ ≠ 0, then, with ``regrow``, the highest
    ``regrow`` among θ = 0 for the places left."""
    scores = _groups_of(score.detach().to(theta.device), m, transposed, name)
    alive = _groups_of(theta.detach() != 0, m, transposed, name)
    inf = torch.tensor(float("inf"), dtype=scores.dtype, device=scores.device)
    top = torch.topk(torch.where(alive, scores, -inf), n, dim=-1).indices
    allowed = torch.zeros_like(alive).scatter_(-1, top, True) & alive
    if regrow is not None:
        growth = _groups_of(regrow.detach().to(theta.device), m, transposed, name)
        growth = torch.where(alive, -inf.to(growth.dtype), growth)
        order = torch.topk(growth, n, dim=-1, sorted=True).indices
        free = n - allowed.sum(-1, keepdim=True)
        rank = torch.arange(n, device=order.device).expand_as(order)
        grown = torch.zeros_like(alive).scatter_(-1, order, rank < free) & ~alive
        allowed |= grown
    return _from_input_rows(allowed.reshape(allowed.shape[0], -1), theta.shape, transposed)


def pattern_key(pattern: str | NMPattern | None) -> dict:
    """The pattern's part of a callback's ``state_key``: nothing for ``"unstructured"``, so the
    keys of unstructured runs stay as they were; ``"n:m"`` for the typed value."""
    return {} if pattern is None or pattern == UNSTRUCTURED else {"pattern": str(pattern)}


def pattern_keywords(
    module: nn.Module,
    pattern: str | NMPattern | None,
    include: Iterable | LayerSelection | None = None,
    exclude: Iterable | None = None,
) -> dict:
    """``select_mask``'s ``pattern`` (parsed: ``NMPattern`` or ``None``) and ``transposed``
    keywords for ``module``'s selected layers (``transposed``: the layers that store their
    weight (in, out), by ``is_transposed``)."""
    parsed = check_pattern(pattern)
    layers = prunable_layers(module, include, exclude)
    return {
        "pattern": parsed,
        "transposed": [name for name, layer in layers if is_transposed(layer)],
    }


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


@torch.no_grad()
def select_mask(
    scores: dict[str, torch.Tensor],
    theta: dict[str, torch.Tensor],
    sparsity: float | None = None,
    scope: Scope = "global",
    densities: dict[str, float] | None = None,
    regrow: dict[str, torch.Tensor] | None = None,
    pattern: str | NMPattern | None = UNSTRUCTURED,
    transposed: Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """The one way every method chooses a mask: 0/1 masks (by layer name, shaped and typed
    like ``theta``) keeping the highest ``scores`` among the weights whose effective value θ
    is not exactly zero.

    The budget is ``round((1 − sparsity) · n)`` kept weights of the ``n`` scored weights overall
    (``scope="global"``: one threshold over every layer) or of each layer (``scope="layer"``),
    or ``round(density · n)`` in each layer for per-layer ``densities``.

    A weight with θ = 0 is never chosen by ``scores``: among exact zeros, scores (|θ|, a
    saliency proportional to θ) only tie, and ``topk`` would choose by tie order. When fewer
    weights are non-zero than the budget, all of them are kept and the mask is sparser than
    asked (the caller reports the achieved sparsity), unless ``regrow`` gives a stated rule:
    scores for the zero weights (e.g. random, or |∂L/∂θ| for RiGL), the highest of which fill
    the rest of the budget. A grown weight is 0; the caller restarts it from 0 with cleared
    optimizer state (``sparsify.dst.restart_``).

    ``pattern="unstructured"`` (or ``None``) lets any subset of the entries be kept.
    ``pattern="n:m"`` (e.g. ``"2:4"``, or ``NMPattern(2, 4)``) first restricts the choice: in
    every group of m consecutive weights along a layer's input dimension (dim 1 of an (out, in)
    weight; for a conv weight (out, in, kh, kw), m consecutive input channels at each (out, kh,
    kw), the layout of NVIDIA's ASP and of sparse tensor cores; dim 0 for the layers named in
    ``transposed``, stored (in, out) like ``transformers``' ``Conv1D``), only the n highest
    scores among θ ≠ 0 are allowed (with ``regrow``, the places left are allowed to the highest
    ``regrow`` among θ = 0). The budget is then chosen among the allowed entries only, by the
    same rule. So N:M alone gives sparsity 1 − n/m (more where a group has fewer than n non-zero
    θ); a higher ``sparsity`` is a further unstructured choice within the allowed entries; a
    lower one keeps every allowed entry, and the achieved sparsity is 1 − n/m (the pattern wins;
    the caller reports it). A layer whose input dimension m does not divide is a
    ``ConfigError``.
    """
    if (sparsity is None) == (densities is None):
        raise ValueError("select_mask needs exactly one of sparsity and densities")
    if sparsity is not None:
        check_sparsity(sparsity)
    nm = check_pattern(pattern)
    transposed = set(transposed)
    allowed = None
    if nm is not None:
        allowed = {
            name: _nm_allowed(
                scores[name],
                theta[name],
                regrow[name] if regrow is not None else None,
                *nm,
                name in transposed,
                name,
            )
            for name in scores
        }
    names = list(scores)
    sizes = [scores[name].numel() for name in names]
    if densities is not None:
        groups = [([name], round(densities[name] * size)) for name, size in zip(names, sizes)]
    elif check_scope(scope) == "layer":
        groups = [([name], round((1 - sparsity) * size)) for name, size in zip(names, sizes)]
    else:
        groups = [(names, round((1 - sparsity) * sum(sizes)))]
    out = {}
    for group, budget in groups:
        keep = _keep_highest(
            [scores[name] for name in group],
            [theta[name] for name in group],
            budget,
            [regrow[name] for name in group] if regrow is not None else None,
            [allowed[name] for name in group] if allowed is not None else None,
        )
        for name, kept in zip(group, keep.split([scores[name].numel() for name in group])):
            out[name] = kept.view_as(theta[name]).to(theta[name].dtype)
    return out


def _keep_highest(
    scores: list, theta: list, budget: int, regrow: list | None, allowed: list | None = None
) -> torch.Tensor:
    """A flat bool tensor over the concatenated entries: the ``budget`` highest ``scores``
    among θ ≠ 0, then, with ``regrow``, the highest ``regrow`` among θ = 0 up to ``budget``;
    only among the ``allowed`` entries when given."""
    device = scores[0].device
    alive = [_nonzero(t).to(device) for t in theta]
    permitted = None if allowed is None else [a.to(device) for a in allowed]
    if permitted is not None:
        alive_permitted = [live & a for live, a in zip(alive, permitted)]
    budget = max(0, min(budget, sum(s.numel() for s in scores)))
    keep = _highest(scores, alive if permitted is None else alive_permitted, budget)
    chosen = int(torch.count_nonzero(keep))
    if regrow is not None and budget > chosen:
        dead = [~live for live in alive]
        if permitted is not None:
            dead = [d & a for d, a in zip(dead, permitted)]
        keep |= _highest(regrow, dead, budget - chosen)
    return keep


def _nonzero(theta: torch.Tensor) -> torch.Tensor:
    """θ ≠ 0 (a bool tensor is its own answer: callers may pass masks as θ)."""
    return theta if theta.dtype == torch.bool else theta.detach() != 0


# Above this many entries, the threshold is bracketed from a sample before the exact search.
_SAMPLED_ABOVE = 1 << 20
_SAMPLE = 1 << 16


def _highest(values: list, eligible: list, count: int) -> torch.Tensor:
    """A flat bool tensor over the concatenated entries of the tensors ``values`` keeping
    exactly ``min(count, eligible.sum())`` of the ``eligible`` ones (bool tensors shaped like
    ``values``): those above the threshold t (the ``count``-th highest eligible value), then
    entries equal to t by position, lowest index first. No sort: t is found by ``kthvalue``."""
    device = eligible[0].device
    available = sum(int(torch.count_nonzero(e)) for e in eligible)
    if count >= available:
        return torch.cat([e.flatten() for e in eligible])
    if count <= 0:
        return torch.zeros(sum(e.numel() for e in eligible), dtype=torch.bool, device=device)
    dtype = torch.float32
    for v in values:
        dtype = torch.promote_types(dtype, v.dtype if v.is_floating_point() else torch.float64)
    candidates = torch.empty(sum(v.numel() for v in values), dtype=dtype, device=device)
    lowest = torch.full((), -torch.inf, dtype=dtype, device=device)
    start = 0
    for v, e in zip(values, eligible):  # one pass: an ineligible entry becomes -inf
        part = candidates[start : start + v.numel()].view(v.shape)
        torch.where(e, v.detach().to(device, dtype), lowest, out=part)
        start += v.numel()
    threshold = _kth_highest(candidates, count)
    keep = candidates > threshold  # an ineligible entry is -inf, never above
    missing = count - int(torch.count_nonzero(keep))
    if missing:
        ties = candidates == threshold
        if threshold == -torch.inf:  # only then can an ineligible entry tie
            ties &= torch.cat([e.flatten() for e in eligible])
        ties = ties.nonzero().squeeze(1)
        keep[ties[:missing]] = True
    return keep


def _kth_highest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The exact k-th highest entry of the flat ``values`` (1 ≤ k ≤ numel).

    For large tensors a seeded random sample of 65 536 entries brackets it between two sample
    quantiles (8 binomial standard deviations apart) and ``kthvalue`` searches only the entries
    inside the bracket; if the bracket misses, ``kthvalue`` searches everything. Either way the
    answer is exact: the sample only decides how much is searched."""
    n = values.numel()
    if n > _SAMPLED_ABOVE:
        generator = torch.Generator(device=values.device).manual_seed(0)
        picks = torch.randint(n, (_SAMPLE,), generator=generator, device=values.device)
        sample = values[picks].sort().values
        rank = (1 - k / n) * _SAMPLE  # the k-th highest's position in the sorted sample
        margin = 4 * math.sqrt(_SAMPLE * (k / n) * (1 - k / n)) + 8
        low, high = int(rank - margin), int(rank + margin)
        lo = sample[low] if low >= 0 else None
        hi = sample[high] if high < _SAMPLE else None
        below_hi = values <= hi if hi is not None else None
        above = 0 if hi is None else n - int(torch.count_nonzero(below_hi))
        if above < k:
            inside = values > lo if lo is not None else torch.ones_like(values, dtype=torch.bool)
            if below_hi is not None:
                inside &= below_hi
            inside = values[inside]
            if k - above <= inside.numel():
                return torch.kthvalue(inside, inside.numel() - (k - above) + 1).values
    return torch.kthvalue(values, n - k + 1).values


@torch.no_grad()
def set_masks(module: nn.Module, new_masks: dict[str, torch.Tensor]) -> None:
    """Copy 0/1 tensors into the mask buffers of the named layers (adding masks if needed)."""
    add_masks(module, LayerSelection(tuple(new_masks)))
    live = layer_masks(module)
    for name, mask in new_masks.items():
        live[name].copy_(mask)


@torch.no_grad()
def magnitude_prune(
    module: nn.Module,
    sparsity: float,
    scope: Scope = "global",
    include: Iterable | None = None,
    exclude: Iterable | None = None,
    regrow: dict[str, torch.Tensor] | None = None,
    layer_floor: float = LAYER_FLOOR,
    pattern: str | NMPattern | None = UNSTRUCTURED,
) -> dict[str, torch.Tensor]:
    """Mask the smallest |θ| so the selected weights reach ``sparsity`` (globally or per layer).

    ``pattern`` (``"unstructured"`` or ``"n:m"``, e.g. ``"2:4"``; parsed: ``NMPattern``)
    restricts the kept weights to at most n in every group of m along each layer's input
    dimension (``select_mask``).

    With ``scope="global"``, every layer keeps at least ``layer_floor · (1 − sparsity)`` of its
    weights (``layer_densities``' floor; 0: the plain global threshold), unless ``regrow`` is
    given (its rule fills the global target) or ``pattern`` is N:M.
    Exact zeros are never kept in place of a non-zero weight nor chosen by tie order: with fewer
    non-zero weights than the target keeps, the mask keeps them all and the sparsity is higher
    than asked, unless ``regrow`` scores the zero weights (``select_mask``). Works on plain and
    reparametrized models; returns the new masks by layer name. Weights that are not finite (a
    diverged run) are an error, not a mask.
    """
    check_sparsity(sparsity)
    check_scope(scope)
    check_layer_floor(layer_floor)
    structure = pattern_keywords(module, pattern, include, exclude)
    theta = {name: layer.weight for name, layer in prunable_layers(module, include, exclude)}
    if not theta:
        raise ConfigError("magnitude_prune found no prunable layers (conv or linear) to prune")
    for name, weight in theta.items():
        if not torch.isfinite(weight).all():
            raise ConfigError(
                f"cannot prune by magnitude: {name}'s weights are not finite (NaN or inf), "
                "training diverged; lower the learning rate or warm it up"
            )
    scores = {name: weight.abs() for name, weight in theta.items()}
    # An N:M pattern keeps n of every m weights in each layer: no layer needs the floor.
    if scope == "global" and layer_floor > 0 and regrow is None and structure["pattern"] is None:
        densities = layer_densities(
            module,
            sparsity,
            "global",
            include=include,
            exclude=exclude,
            scores=scores,
            min_density=layer_floor * (1 - sparsity),
        )
        new_masks = select_mask(scores, theta, densities=densities, regrow=regrow, **structure)
    else:
        new_masks = select_mask(scores, theta, sparsity, scope, regrow=regrow, **structure)
    set_masks(module, new_masks)
    return new_masks


# Layer densities: how a global sparsity target is shared among layers (docs/pai.md, "Layer
# densities and PaI scores").

Distribution = Literal["uniform", "global", "erk"]
DISTRIBUTIONS = get_args(Distribution)


def check_distribution(distribution: Distribution) -> Distribution:
    check_choice("distribution", distribution, Distribution)
    return distribution


def layer_densities(
    module: nn.Module,
    sparsity: float,
    distribution: Distribution = "erk",
    dense_layers: Iterable | None = None,
    include: Iterable | None = None,
    exclude: Iterable | None = None,
    scores: dict[str, torch.Tensor] | None = None,
    min_density: float = 0.0,
) -> dict[str, float]:
    """The fraction of weights each selected layer keeps, so that the kept weights of all
    selected layers number ``round((1 − sparsity) · n)`` (to one weight per layer).

    - ``uniform``: the same density in every layer that is not dense.
    - ``erk`` (Erdős–Rényi–Kernel, Evci et al. 2020): density ∝ (sum of the weight shape's
      dims) / (product of its dims), times one factor ε solved so the total is the target; a
      layer whose density would exceed 1 is made dense and ε solved again for the rest.
    - ``global``: one threshold on ``scores`` (by layer name; default |θ|) over every layer
      that is not dense; the densities are the fractions each layer keeps above it. A layer
      that would keep less than ``min_density`` keeps ``min_density`` (its top scores), and
      the threshold is solved again for the other layers, so that no layer collapses.

    ``dense_layers`` are kept whole and count towards the target: fnmatch patterns of layer
    names, module types, or ``"first"`` / ``"last"`` (the first / last selected layer in
    registration order). A target the dense layers alone exceed is a ``ConfigError``.
    """
    check_sparsity(sparsity)
    check_distribution(distribution)
    layers = dict(prunable_layers(module, include, exclude))
    if not layers:
        raise ConfigError("layer_densities found no prunable layers (conv or linear)")
    shapes = {name: tuple(layer.weight.shape) for name, layer in layers.items()}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    dense = dense_layer_names(layers, dense_layers)
    allowed = round((1 - sparsity) * sum(sizes.values()))
    dense_count = sum(sizes[name] for name in dense)
    if dense_count > allowed:
        raise ConfigError(
            f"dense_layers={list(dense_layers)!r} is invalid with sparsity={sparsity}: the dense "
            f"layers hold {dense_count} weights, more than the {allowed} the target allows"
        )
    if distribution == "erk":
        densities = _erk(shapes, sizes, dense, allowed)
    else:
        rest = [name for name in layers if name not in dense]
        budget = allowed - dense_count
        if distribution == "uniform":
            rest_size = sum(sizes[name] for name in rest)
            densities = {name: budget / rest_size for name in rest}
        else:
            theta = {name: layer.weight.detach() for name, layer in layers.items()}
            if scores is None:
                scores = {name: weight.abs() for name, weight in theta.items()}
            densities = _floored_global_densities(scores, theta, rest, sizes, budget, min_density)
    return {name: 1.0 if name in dense else min(1.0, densities[name]) for name in layers}


def dense_layer_names(layers: dict[str, nn.Module], dense_layers: Iterable | None) -> set[str]:
    """The names among ``layers`` that ``dense_layers`` selects (see ``layer_densities``)."""
    names = list(layers)
    chosen: set[str] = set()
    for selector in dense_layers or []:
        if selector in ("first", "last"):
            matched = [names[0] if selector == "first" else names[-1]]
        elif isinstance(selector, type):
            matched = [name for name in names if isinstance(layers[name], selector)]
        else:
            matched = [name for name in names if fnmatch.fnmatchcase(name, str(selector))]
        if not matched:
            raise ConfigError(
                f"dense_layers entry {selector!r} is invalid: it matches no prunable layer; "
                f"layers: {', '.join(names)} (fnmatch patterns, module types, 'first', 'last')"
            )
        chosen.update(matched)
    return chosen


def _erk(shapes: dict, sizes: dict, dense: set[str], allowed: int) -> dict[str, float]:
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    dense = set(dense)
    while True:
        rest = [name for name in shapes if name not in dense]
        budget = allowed - sum(sizes[name] for name in dense)
        epsilon = budget / sum(raw[name] * sizes[name] for name in rest) if rest else 0.0
        # ε only grows as layers turn dense, so every layer over 1 now stays over 1.
        over = {name for name in rest if epsilon * raw[name] > 1}
        if not over:
            return {name: 1.0 if name in dense else epsilon * raw[name] for name in shapes}
        dense |= over


def _global_densities(scores: dict, theta: dict, rest: list[str], sizes: dict, budget: int) -> dict:
    missing = [name for name in rest if name not in scores]
    if missing:
        raise ConfigError(f"scores are missing for layers {missing}: give one tensor per layer")
    if not rest or budget <= 0:
        return {name: 0.0 for name in rest}
    total = sum(sizes[name] for name in rest)
    kept = select_mask(
        {name: scores[name] for name in rest},
        {name: theta[name] for name in rest},
        sparsity=max(0.0, 1 - budget / total),
    )
    return {name: int(kept[name].sum()) / sizes[name] for name in rest}


def _floored_global_densities(
    scores: dict, theta: dict, rest: list[str], sizes: dict, budget: int, min_density: float
) -> dict:
    """Global densities, with every layer below ``min_density`` raised to it (water-filling:
    the raised layers leave the threshold, which is solved again for the others)."""
    floored: dict[str, float] = {}
    while True:
        free = [name for name in rest if name not in floored]
        floor_count = sum(round(density * sizes[name]) for name, density in floored.items())
        densities = _global_densities(scores, theta, free, sizes, max(0, budget - floor_count))
        low = {name for name in free if densities[name] < min_density}
        if not low:
            return {**densities, **floored}
        floored.update(
            {name: max(1, round(min_density * sizes[name])) / sizes[name] for name in low}
        )
