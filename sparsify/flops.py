"""FLOPs of a sparse network, counted as RigL counts them (Evci et al. 2020, "Rigging the
Lottery", ICML 2020; google-research/rigl ``rigl/sparse_utils.py``, ``get_stats``).

Inference, per example: every weight layer (``nn.Conv1d/2d/3d``, ``nn.Linear``, the
projections of ``nn.MultiheadAttention``, ``transformers``' ``Conv1D``) multiplies each of its
weights once at every position it is applied to (an output pixel of a convolution, a token of
a linear layer), so

    FLOPs = 2 · Σ_layers positions_l · nnz(θ_l)

with nnz(θ_l) the non-zeros of the effective weight θ = m ⊙ w ⊙ mask: a layer at density d
costs d times its dense multiply-adds. A multiply-add counts as two FLOPs, as in RigL's tables
(dense ResNet-50: 8.2e9 FLOPs per 224 × 224 image). Bias additions, normalization, activations,
pooling and the weightless products of attention (q kᵀ, softmax · v) are not counted, as RigL
counts only its masked layers.

Training, per step: forward, and a backward that computes the gradient of the input and of the
weights, each as costly as the forward: 3 × the inference FLOPs of the step's examples, at the
density of the weights that step uses (dense phases dense, sparse phases sparse). RigL's
occasional dense gradient for growing connections adds (f_D − f_S) / (ΔT + 1) per step, under
0.4 % of dense training for ΔT = 100; it is not counted.

Positions are read from the real model: forward hooks record the output shape of each weight
layer on one batch (``record_positions``), so strides, padding, dilation, groups and
sequence lengths are whatever the model does; ``flops`` then needs only the current weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from sparsify.reparam import (
    Mask,
    PointwiseProduct,
    is_transposed,
    prunable_types,
    weight_parametrization,
)


@dataclass
class WeightUse:
    """One weight (or a slice of one, for attention's packed q, k, v) applied at ``positions``
    places per example."""

    name: str
    weight: Callable[[], torch.Tensor]  # the effective weight θ, read when counting
    positions: float
    layer: nn.Module | None = None  # the layer holding it; None: counted again every time


def _out_channels(layer: nn.Module) -> int:
    """The size of the output's feature dimension: the weight's first axis, or its last for
    ``Conv1D``, which stores (in, out)."""
    return layer.weight.shape[-1 if is_transposed(layer) else 0]


def _attention_uses(name: str, attention: nn.MultiheadAttention, args, kwargs, batch: int):
    """q, k, v and output projections of ``nn.MultiheadAttention``, which calls
    ``F.multi_head_attention_forward`` on its weights (its ``out_proj`` module's own forward never
    runs, so its hook would not fire)."""
    names = ("query", "key", "value")
    inputs = [args[i] if i < len(args) else kwargs[names[i]] for i in range(3)]
    tokens = [t.numel() / t.shape[-1] / batch for t in inputs]
    e = attention.embed_dim
    if attention._qkv_same_embed_dim:
        sliced = [(lambda i=i: attention.in_proj_weight[i * e : (i + 1) * e]) for i in range(3)]
    else:
        sliced = [
            lambda: attention.q_proj_weight,
            lambda: attention.k_proj_weight,
            lambda: attention.v_proj_weight,
        ]
    prefix = f"{name}." if name else ""
    uses = [WeightUse(prefix + p, w, n) for p, w, n in zip("qkv", sliced, tokens)]
    uses.append(WeightUse(prefix + "out_proj", lambda: attention.out_proj.weight, tokens[0]))
    return uses


def weight_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every layer whose multiply-adds are counted: convolutions, linear layers (``Conv1D``
    too) and ``nn.MultiheadAttention``; the linear layers inside an attention module are
    counted with it."""
    types = (*prunable_types(), nn.MultiheadAttention)
    inside_attention = set()
    for name, layer in model.named_modules():
        if isinstance(layer, nn.MultiheadAttention):
            inside_attention.update(id(m) for m in layer.modules() if m is not layer)
        if isinstance(layer, types) and id(layer) not in inside_attention:
            yield name, layer


@contextmanager
def record_positions(model: nn.Module, batch_size: int) -> Iterator[list[WeightUse]]:
    """Within the block, every forward of ``model`` appends to the yielded list one
    ``WeightUse`` per weight layer call, its positions divided by ``batch_size``; a layer called
    twice (weights shared) is counted twice."""
    uses: list[WeightUse] = []

    def hook_for(name: str, layer: nn.Module):
        if isinstance(layer, nn.MultiheadAttention):

            def attention_hook(module, args, kwargs, output):
                uses.extend(_attention_uses(name, module, args, kwargs, batch_size))

            return layer.register_forward_hook(attention_hook, with_kwargs=True)

        def hook(module, args, output):
            positions = output.numel() / _out_channels(module) / batch_size
            uses.append(WeightUse(name, lambda: module.weight, positions, module))

        return layer.register_forward_hook(hook)

    handles = [hook_for(name, layer) for name, layer in weight_layers(model)]
    try:
        yield uses
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def flops(uses: list[WeightUse], dense: bool = False) -> float:
    """Inference FLOPs per example, 2 · Σ positions · nnz(θ), at the weights' current density
    (``dense``: as if every weight were non-zero)."""
    total = 0.0
    for use in uses:
        weight = use.weight()
        count = weight.numel() if dense else int(torch.count_nonzero(weight))
        total += 2 * use.positions * count
    return total


class NonzeroCounts:
    """``flops(uses)`` as a 0-d tensor on the weights' device, counting nnz(θ) again only where
    it can have changed: for sampling at every training step. A weight whose every kept entry
    is non-zero (θ = m ⊙ w ⊙ mask, θ = w ⊙ mask, a weight pruned by ``torch.nn.utils.prune``, a
    plain weight) changes its zeros only when its mask changes (the mask's in-place version
    counter moves, or a new mask is put on the layer): it is counted then. A kept entry at
    exactly 0 (RiGL's regrown weights start there) can leave it at any step, so such a weight is
    counted at every call until none is left; so is a soft mask (STR, CS) or an attention
    slice; and every weight at a ``full`` count. Deciding whether a count can be kept reads it
    on the host, once per count, not at the steps in between."""

    def __init__(self, uses: list[WeightUse]):
        self.uses = uses
        self._counts: list[torch.Tensor | None] = [None] * len(uses)
        self._kept: list[tuple | None] = [None] * len(uses)  # what the count can be kept for
        self._total: torch.Tensor | None = None

    def _mask(self, use: WeightUse) -> tuple[torch.Tensor | None, tuple] | None:
        """The mask that moves the zeros of a weight (``None`` for a plain weight) and its
        (identity, version); ``None`` where the zeros move by themselves."""
        if use.layer is None:
            return None
        p = weight_parametrization(use.layer)
        if p is None:  # a plain weight, or one masked by torch.nn.utils.prune
            mask = getattr(use.layer, "weight_mask", None)
        elif type(p) in (PointwiseProduct, Mask):
            mask = p.mask
        else:
            return None
        return mask, (None,) if mask is None else (id(mask), mask._version)

    @torch.no_grad()
    def flops(self, full: bool = False) -> torch.Tensor:
        """2 · Σ positions · nnz(θ) as a 0-d float64 tensor on the weights' device: the same
        tensor as at the last call where no weight was counted again."""
        recounted = self._total is None
        for i, use in enumerate(self.uses):
            found = self._mask(use)
            version = None if found is None else found[1]
            if full or version is None or version != self._kept[i] or self._counts[i] is None:
                weight = use.weight()
                count = torch.count_nonzero(weight)
                self._counts[i] = count.double() * (2 * use.positions)
                mask = None if found is None else found[0]
                kept = weight.numel() if mask is None else torch.count_nonzero(mask)
                self._kept[i] = version if version is not None and bool(count == kept) else None
                recounted = True
        if recounted and self._counts:
            self._total = torch.stack(self._counts).sum()
        elif recounted:
            self._total = torch.zeros((), dtype=torch.float64)
        return self._total


@torch.no_grad()
def count_flops(model: nn.Module, *inputs, **kwargs) -> dict:
    """Inference FLOPs per example of ``model`` on a batch ``inputs`` (the first input's first
    axis is the batch):

        {"inference_flops": at θ's density, "dense_inference_flops": all weights non-zero,
         "layers": {name: (flops, dense flops)}}

    One forward in eval mode (so batch-norm statistics stay as they are); the training flag is
    restored after."""
    batch = inputs[0].shape[0] if inputs else next(iter(kwargs.values())).shape[0]
    training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with record_positions(model, batch) as uses:
            model(*inputs, **kwargs)
    finally:
        for module, flag in training:
            module.training = flag
    layers: dict[str, tuple[float, float]] = {}
    for use in uses:
        sparse, dense = flops([use]), flops([use], dense=True)
        previous = layers.get(use.name, (0.0, 0.0))
        layers[use.name] = (previous[0] + sparse, previous[1] + dense)
    return {
        "inference_flops": sum(s for s, _ in layers.values()),
        "dense_inference_flops": sum(d for _, d in layers.values()),
        "layers": layers,
    }
