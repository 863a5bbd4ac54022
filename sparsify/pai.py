"""Pruning at initialization (PaI): score every prunable weight once, before training, and keep
the highest scores under a fixed mask.

Every score is of the effective weight θ the forward pass uses (m ⊙ w ⊙ mask for
reparametrized layers), computed on a private copy of the model in which θ is a plain
parameter: the model itself, its mode (train / eval), its BatchNorm statistics and its
gradients are left as they were. Only its masks change.

- ``random``: uniform noise (a random mask).
- ``magnitude``: |θ|.
- ``snip``: |∂L/∂θ ⊙ θ| on batches of data (Lee et al., SNIP, ICLR 2019).
- ``grasp``: θ ⊙ (H g), with g = ∂L/∂θ and H the Hessian of L, the logits divided by a
  temperature (200) in L; the lowest scores are pruned (Wang et al., GraSP, ICLR 2020).
  Removing weight q changes the gradient norm ‖g‖² by about −2 θ_q (H g)_q, so pruning the
  lowest θ ⊙ (H g) keeps the gradient flow.
- ``synflow``: data-free. Weights (and every other parameter) replaced by their absolute value,
  an all-ones input, R = sum(output), score |θ ⊙ ∂R/∂θ|, pruned iteratively over ``rounds``
  rounds to densities ``density^(k/rounds)`` (Tanaka et al., SynFlow, NeurIPS 2020).
  R grows like the product of the layers' gains and overflows float32 in deep networks
  (1.4e73 for ResNet-50 at 224 px). ``synflow_precision`` chooses how many of the first rounds
  run in float64 (default ``"mixed"``: half; see ``float64_rounds``); the others are scored in
  float32 on a trace of the network rescaled at its cut points, which changes every score by
  one common factor (``sparsify.homogeneous``), where the network is built of positively
  homogeneous operations; otherwise, and from the first round whose float32 scores are not
  finite, in float64 (``synflow_scores`` is always float64). BatchNorm is in eval mode with
  running mean 0 and variance 1, so it is the positive per-channel scale |γ|/sqrt(1 + eps)
  plus |β| whatever statistics the model has collected. A model that reads token ids (its example
  input or first batch is an integer tensor) gets token 1 at every position as its all-ones
  input; LayerNorm and softmax make a transformer no positively homogeneous network, so
  SynFlow's conservation argument does not hold there and the score is a heuristic (docs/hf.md).

``snip`` and ``grasp`` score in the mode of their reference (``score_mode="reference"``):
``snip`` in eval mode, as Synaptic-Flow's ``prune_loop`` does unless asked for ``train_mode``
(ganguli-lab/Synaptic-Flow, ``prune.py``): BatchNorm normalizes with the model's running
statistics (mean 0, variance 1 at initialization) and dropout is off; ``grasp`` in training mode,
as alecwangcq/GraSP does (``pruner/GraSP.py`` scores a copy of the freshly built network, whose
``.eval()`` is commented out): BatchNorm uses the batch's statistics, as in the first training
step. ``score_mode="eval"`` or ``"train"`` sets both. Batches are ``(input, target, ...)`` and
the loss is ``loss_fn(module(input), target)``, cross-entropy by default.

The sanity checks of Frankle et al. (2021, "Pruning Neural Networks at Initialization: Why are
We Missing the Mark?"), which Synaptic-Flow's ``prune_loop`` also offers: ``invert`` keeps the
lowest scores instead of the highest (in every SynFlow round); ``shuffle`` permutes each layer's
mask uniformly at random after the selection (every layer keeps its density, not its
positions); ``prune_at_init(..., reinitialize=True)`` gives the weights new values from their
layer's initial distribution (``reinitialize_``). Random draws use torch's global generator.

GraSP's data, as in the reference (alecwangcq/GraSP, ``GraSP_fetch_data`` in pruner/GraSP.py,
``samples_per_class`` 10 in its configs): with ``samples_per_class`` set, the first that many
examples of every class in the loader's order, ordered by class, scored as two halves
(``grasp_batches``). Without it, the first ``num_batches`` batches.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from sparsify.errors import ConfigError, check_choice
from sparsify.homogeneous import homogeneous_scorer
from sparsify.masks import (
    check_distribution,
    check_pattern,
    check_sparsity,
    layer_densities,
    pattern_keywords,
    select_mask,
    set_masks,
)
from sparsify.reparam import prunable_layers
from sparsify.state import stored_tensors, unparametrize_

SCORES = ("random", "magnitude", "snip", "grasp", "synflow")
DATA_SCORES = ("snip", "grasp")
# The mode (BatchNorm, dropout) ``snip`` and ``grasp`` score in (``pai_masks``' ``score_mode``):
# each score's reference mode, or one of the two for both.
ScoreMode = Literal["reference", "eval", "train"]
Mode = Literal["eval", "train"]
REFERENCE_MODES: dict[str, Mode] = {"snip": "eval", "grasp": "train"}
GRASP_TEMPERATURE = 200.0
SYNFLOW_ROUNDS = 100
# How SynFlow's rounds compute (``pai_masks``' ``synflow_precision``; docs/pai.md).
SynflowPrecision = Literal["mixed", "float64", "float32"]

Scores = dict[str, torch.Tensor]


def check_score(score: str) -> str:
    if score not in SCORES:
        raise ConfigError(f"score={score!r} is invalid: choose one of {', '.join(SCORES)}")
    return score


def prune_at_init(
    module: nn.Module,
    sparsity: float,
    score: str = "random",
    *,
    reinitialize: bool = False,
    **options,
) -> Scores:
    """Mask ``module`` to ``sparsity`` by the highest ``score``; return the masks it set.
    ``options`` are ``pai_masks``'s keyword arguments (see there); ``reinitialize`` then gives
    the selected weights new values from their layer's initial distribution
    (``reinitialize_``: a sanity check, not a method)."""
    new_masks = pai_masks(module, sparsity, score, **options)
    set_masks(module, new_masks)
    if reinitialize:
        permutations = reinit_permutations(module, options.get("include"), options.get("exclude"))
        reinitialize_(module, permutations)
    return new_masks


def pai_masks(
    module: nn.Module,
    sparsity: float,
    score: str = "random",
    *,
    distribution: str = "global",
    dataloader: Iterable | None = None,
    loss_fn: Callable | None = None,
    loss_of: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    num_batches: int = 1,
    dense_layers: Iterable | None = None,
    include: Iterable | None = None,
    exclude: Iterable | None = None,
    temperature: float = GRASP_TEMPERATURE,
    rounds: int = SYNFLOW_ROUNDS,
    input_shape: tuple[int, ...] | None = None,
    samples_per_class: int | None = None,
    pattern: str = "unstructured",
    synflow_precision: SynflowPrecision = "mixed",
    score_mode: ScoreMode = "reference",
    invert: bool = False,
    shuffle: bool = False,
) -> Scores:
    """The masks that keep the highest ``score`` s at ``sparsity`` (``prune_at_init`` sets them),
    shared among layers by ``distribution`` (``global``: one threshold on the scores;
    ``uniform``, ``erk``: fixed layer densities, see ``sparsify.masks.layer_densities``). Every
    argument after ``score`` is keyword-only.

    ``snip`` / ``grasp`` use the first ``num_batches`` batches of ``dataloader``; ``synflow``
    needs the input shape without the batch dimension: ``input_shape``, else the module's
    ``example_input_array``, else the shape of the first batch of ``dataloader``. With
    ``samples_per_class``, ``grasp`` scores on class-balanced data instead (``grasp_batches``).
    ``loss_of(module, batch)``, where given, is the loss of a batch in place of
    ``loss_fn(module(input), target)``, e.g. a Hugging Face model's own loss,
    ``model(**batch)["loss"]``; the logits are then out of reach, so ``grasp`` needs
    ``temperature=1``.

    ``pattern="n:m"`` (e.g. ``"2:4"``) keeps at most n of every m weights along each layer's
    input dimension, the n highest scores of the group (``sparsify.masks.select_mask``; a
    ``sparsity`` below 1 − n/m achieves 1 − n/m). SynFlow applies the pattern in every round,
    so its first round already reaches 1 − n/m and the rounds prune further within it.

    ``synflow_precision``: ``"float64"`` scores every SynFlow round in
    float64 (the exact computation); ``"float32"`` every round in float32 on the rescaled trace
    (``sparsify.homogeneous``: ~2× faster on CPU, but float32 rounding flips a few near-ties
    per run, and later rounds amplify each flip: 1.4 % of ResNet-50's kept weights differ
    after 100 rounds); ``"mixed"`` (default) the first half of the rounds in float64 and the
    rest in float32, so fewer rounds amplify a flip (docs/pai.md).

    ``score_mode``: the mode ``snip`` and ``grasp`` score in, ``"eval"`` or ``"train"``;
    ``"reference"`` (default) is each score's reference (``snip`` eval, ``grasp`` train; see the
    module docstring). ``synflow`` always scores in eval mode with BatchNorm's statistics at
    0 and 1 (its data-free definition).

    Sanity checks (Frankle et al. 2021): ``invert`` keeps the lowest scores instead of the
    highest; ``shuffle`` permutes each layer's mask at random after the selection
    (``shuffle_masks``; not with an N:M ``pattern``, which a permutation would break).
    """
    check_sparsity(sparsity)
    check_choice("synflow_precision", synflow_precision, SynflowPrecision)
    check_choice("score_mode", score_mode, ScoreMode)
    structure = pattern_keywords(module, pattern, include, exclude)
    check_shuffle(shuffle, pattern)
    check_score(score)
    check_distribution(distribution)
    check_pai_options(num_batches, temperature, rounds, samples_per_class)
    if score in DATA_SCORES and dataloader is None:
        raise ConfigError(f"score={score!r} needs data: give a dataloader")
    if loss_of is not None and score == "grasp" and temperature != 1:
        raise ConfigError(
            f"temperature={temperature!r} is invalid with the model's own loss (loss_of): its "
            "logits cannot be divided by a temperature; give temperature=1"
        )
    if score == "grasp" and samples_per_class is not None:
        batches = grasp_batches(module, dataloader, samples_per_class)
    elif dataloader:
        batches = first_batches(dataloader, num_batches, device_of(module))
    else:
        batches = []
    if score == "synflow":
        shape = input_shape or synflow_input_shape(module, batches)
        dtype = synflow_input_dtype(module, batches)
        masks = _synflow_masks(
            module,
            sparsity,
            distribution,
            dense_layers,
            include,
            exclude,
            shape,
            rounds,
            dtype,
            structure,
            synflow_precision,
            invert,
        )
        return shuffle_masks(masks) if shuffle else masks
    mode = REFERENCE_MODES.get(score) if score_mode == "reference" else score_mode
    if score == "random":
        scores = random_scores(module, include, exclude)
    elif score == "magnitude":
        scores = magnitude_scores(module, include, exclude)
    elif score == "snip":
        scores = snip_scores(module, batches, loss_fn, include, exclude, mode, loss_of)
    else:
        scores = grasp_scores(
            module, batches, loss_fn, temperature, include, exclude, mode, loss_of
        )
    if invert:
        scores = inverted(scores)
    densities = layer_densities(
        module, sparsity, distribution, dense_layers, include, exclude, scores=scores
    )
    theta = {name: layer.weight for name, layer in prunable_layers(module, include, exclude)}
    masks = select_mask(scores, theta, densities=densities, **structure)
    return shuffle_masks(masks) if shuffle else masks


def check_pai_options(
    num_batches: int, temperature: float, rounds: int, samples_per_class: int | None = None
) -> None:
    if not (isinstance(num_batches, int) and num_batches >= 1):
        raise ConfigError(f"num_batches={num_batches!r} is invalid: must be an integer >= 1")
    if not temperature > 0:
        raise ConfigError(f"temperature={temperature!r} is invalid: must be > 0")
    if not (isinstance(rounds, int) and rounds >= 1):
        raise ConfigError(f"rounds={rounds!r} is invalid: must be an integer >= 1")
    if samples_per_class is not None and not (
        isinstance(samples_per_class, int) and samples_per_class >= 1
    ):
        raise ConfigError(
            f"samples_per_class={samples_per_class!r} is invalid: an integer >= 1 or null"
        )


# Sanity checks (Frankle et al. 2021): what is left of a method when its mask is shuffled, its
# weights re-drawn, or its ranking inverted.


def check_shuffle(shuffle: bool, pattern: str) -> None:
    if shuffle and check_pattern(pattern) is not None:
        raise ConfigError(
            f"shuffle=True is invalid with pattern={pattern!r}: a shuffled mask is not N:M; "
            "use pattern='unstructured'"
        )


def inverted(scores: Scores) -> Scores:
    """−score: selecting the highest keeps the lowest scores."""
    return {name: -score for name, score in scores.items()}


def shuffle_masks(masks: Scores) -> Scores:
    """Each layer's mask with its entries permuted uniformly at random (torch's global
    generator): the same number kept in every layer, at random positions."""
    return {
        name: mask.flatten()[torch.randperm(mask.numel()).to(mask.device)].view_as(mask)
        for name, mask in masks.items()
    }


def reinit_permutations(module: nn.Module, include=None, exclude=None) -> dict[str, torch.Tensor]:
    """A random permutation of each selected layer's weight entries (``reinitialize_``), from
    torch's global generator."""
    return {
        name: torch.randperm(layer.weight.numel())
        for name, layer in prunable_layers(module, include, exclude)
    }


@torch.no_grad()
def reinitialize_(module: nn.Module, permutations: dict[str, torch.Tensor]) -> None:
    """New values for the weights of the layers in ``permutations``, masks unchanged: each
    layer's stored weight (m and w alike for θ = m ⊙ w) is permuted by its layer's permutation.

    The initial weights of a layer are independent draws from one distribution, so a random
    permutation of them is a fresh draw from the layer's own initialization, whatever
    initializer built the model, and keeps the kept weights' values independent of the mask
    (Frankle et al. re-sample from the initializer; Synaptic-Flow calls the model's
    ``_initialize_weights``, which a user's model need not have)."""
    layers = dict(module.named_modules())
    for name, permutation in permutations.items():
        layer = layers[name]
        for tensor in stored_tensors(layer):
            moved = tensor.flatten()[permutation.to(tensor.device)]
            tensor.copy_(moved.view_as(tensor))


# The scores, each a {layer name: tensor shaped like the layer's weight}.


@torch.no_grad()
def random_scores(module: nn.Module, include=None, exclude=None) -> Scores:
    """Uniform noise from torch's global generator."""
    return {
        name: torch.rand_like(layer.weight)
        for name, layer in prunable_layers(module, include, exclude)
    }


@torch.no_grad()
def magnitude_scores(module: nn.Module, include=None, exclude=None) -> Scores:
    """|θ|."""
    return {name: layer.weight.abs() for name, layer in prunable_layers(module, include, exclude)}


def snip_scores(
    module: nn.Module,
    batches: list,
    loss_fn=None,
    include=None,
    exclude=None,
    mode: Mode = REFERENCE_MODES["snip"],
    loss_of: Callable | None = None,
) -> Scores:
    """|g ⊙ θ|, g the gradient of the loss averaged over ``batches``, the scoring copy in
    ``mode`` (``"eval"``: BatchNorm with the model's running statistics, as Synaptic-Flow).
    ``loss_of(scorer, batch)``, where given, is the loss in place of ``loss_fn``'s."""
    scorer, weights = scoring_copy(module, include, exclude)
    scorer.train(mode == "train")
    loss = _batch_loss(loss_fn or F.cross_entropy, 1.0, loss_of)
    grads = _mean_gradient(scorer, weights, batches, loss)
    return {name: (grads[name] * theta).abs().detach() for name, theta in weights.items()}


def grasp_scores(
    module: nn.Module,
    batches: list,
    loss_fn=None,
    temperature: float = GRASP_TEMPERATURE,
    include=None,
    exclude=None,
    mode: Mode = REFERENCE_MODES["grasp"],
    loss_of: Callable | None = None,
) -> Scores:
    """θ ⊙ (H g) for the loss of the logits divided by ``temperature``; keep the largest.

    g is the gradient averaged over ``batches`` (held fixed), H g the gradient of g · ∇L; the
    scoring copy in ``mode`` (``"train"``: BatchNorm with batch statistics, as alecwangcq/GraSP).
    """
    if not batches:
        raise ConfigError("score='grasp' needs data: give a dataloader with at least one batch")
    loss_fn = loss_fn or F.cross_entropy
    scorer, weights = scoring_copy(module, include, exclude)
    scorer.train(mode == "train")
    loss = _batch_loss(loss_fn, temperature, loss_of)
    g = _mean_gradient(scorer, weights, batches, loss)
    params = list(weights.values())
    hg = [torch.zeros_like(p) for p in params]
    with torch.enable_grad(), _math_attention():
        for batch in batches:
            grads = torch.autograd.grad(loss(scorer, batch), params, create_graph=True)
            dot = sum((gi * g[name]).sum() for gi, name in zip(grads, weights))
            for acc, part in zip(hg, torch.autograd.grad(dot, params)):
                acc += part / len(batches)
    return {name: (theta * h).detach() for (name, theta), h in zip(weights.items(), hg)}


def _math_attention():
    """GraSP differentiates twice; the fused attention kernels of ``scaled_dot_product_attention``
    (flash, memory-efficient: what transformers models use) have no double backward, the math
    one has."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def synflow_scores(
    module: nn.Module,
    input_shape: tuple[int, ...],
    include=None,
    exclude=None,
    input_dtype: torch.dtype = torch.float64,
) -> Scores:
    """One round of SynFlow: |θ ⊙ ∂R/∂θ| with R = sum(f(1; |θ|)), in float64. An integer
    ``input_dtype`` (token ids) makes the all-ones input token 1 at every position."""
    scorer, weights = scoring_copy(module, include, exclude, dtype=torch.float64)
    _linearize(scorer)
    ones = torch.ones((1, *input_shape), dtype=input_dtype, device=device_of(scorer))
    return _synflow_round(scorer, weights, ones)


def _synflow_masks(
    module: nn.Module,
    sparsity: float,
    distribution: str,
    dense_layers: Iterable | None,
    include: Iterable | None,
    exclude: Iterable | None,
    input_shape: tuple[int, ...],
    rounds: int,
    input_dtype: torch.dtype = torch.float64,
    structure: dict | None = None,
    precision: str = "mixed",
    invert: bool = False,
) -> Scores:
    """SynFlow's rounds, in float64 up to round ``float64_rounds(rounds, precision)`` and in
    float32 on the rescaled trace of the network after it (``_SynflowScorer``). Under
    ``global`` without dense layers a round is one ``select_mask`` over all layers. ``invert``
    keeps the lowest scores of every round."""
    structure = structure or {}
    # Under "global" only the dense layers matter here: "uniform" checks them without a top-k.
    final = layer_densities(
        module,
        sparsity,
        "uniform" if distribution == "global" else distribution,
        dense_layers,
        include,
        exclude,
    )
    last_float64 = float64_rounds(rounds, precision)
    rounds_scorer = _SynflowScorer(
        module, include, exclude, input_shape, input_dtype, float32=last_float64 == 0
    )
    current = rounds_scorer.live()
    for k in range(1, rounds + 1):
        if k == last_float64 + 1 and k > 1:
            rounds_scorer.to_float32()
        scores = rounds_scorer.scores(current)
        if invert:
            scores = inverted(scores)
        round_sparsity = 1 - (1 - sparsity) ** (k / rounds)
        if distribution == "global" and not dense_layers:
            current = select_mask(scores, current, round_sparsity, **structure)
            continue
        if distribution == "global":
            # A weight pruned in an earlier round stays pruned, even against live zero scores.
            live = {n: s.masked_fill(~current[n], -torch.inf) for n, s in scores.items()}
            densities = layer_densities(
                module, round_sparsity, "global", dense_layers, include, exclude, scores=live
            )
        else:
            densities = {name: d ** (k / rounds) for name, d in final.items()}
        current = select_mask(scores, current, densities=densities, **structure)
    return {name: mask.float() for name, mask in current.items()}


def float64_rounds(rounds: int, precision: str) -> int:
    """How many of SynFlow's first rounds ``precision`` scores in float64: all (``"float64"``),
    none (``"float32"``), or the first half, rounded up (``"mixed"``).

    Why half: one near-tie decided otherwise than in float64 changes the scores of every weight
    sharing its neurons, which moves further near-ties across later thresholds, so the
    difference grows with every later round. On ResNet-50 (100 rounds, sparsity 0.9) float32
    from the first round leaves 1.4 % of the kept weights different from float64, from round 51
    on 0.7–0.9 %, from round 76 on 0.4 % (docs/performance.md)."""
    return {"float64": rounds, "float32": 0, "mixed": (rounds + 1) // 2}[precision]


class _SynflowScorer:
    """The linearized scoring copy SynFlow's rounds share: float64 until ``to_float32``, then
    float32 on the rescaled trace where the network allows it (not for token inputs or networks
    that do not trace), and float64 again from the first round whose float32 scores are not
    finite."""

    def __init__(self, module, include, exclude, input_shape, input_dtype, float32) -> None:
        self.args = module, include, exclude, input_shape, input_dtype
        self.fast = None
        if not (float32 and self.to_float32()):
            self._float64()

    def to_float32(self) -> bool:
        """Score the next rounds in float32 where the network allows it; whether it does."""
        module, include, exclude, _, input_dtype = self.args
        if not input_dtype.is_floating_point:
            return False
        scorer, weights = scoring_copy(module, include, exclude, dtype=torch.float32)
        _linearize(scorer)
        traced = homogeneous_scorer(scorer)
        if traced is not None:
            self._use(traced, weights, torch.float32)
            self.fast = True
        return traced is not None

    def _use(self, scorer, weights, dtype) -> None:
        module, include, exclude, input_shape, input_dtype = self.args
        self.scorer, self.weights = scorer, weights
        ones_dtype = dtype if input_dtype.is_floating_point else input_dtype
        self.ones = torch.ones((1, *input_shape), dtype=ones_dtype, device=device_of(scorer))

    def _float64(self) -> None:
        module, include, exclude, _, _ = self.args
        scorer, weights = scoring_copy(module, include, exclude, dtype=torch.float64)
        _linearize(scorer)
        self._use(scorer, weights, torch.float64)
        self.fast = False

    def live(self) -> Scores:
        """θ ≠ 0 of every scored layer."""
        return {name: theta.detach() != 0 for name, theta in self.weights.items()}

    def scores(self, current: Scores) -> Scores:
        """|θ ⊙ ∂R/∂θ| (up to one common factor) with the weights outside ``current`` at 0.
        ``current`` only shrinks from round to round, so the weights are masked in place."""
        with torch.no_grad():
            for name, theta in self.weights.items():
                theta.mul_(current[name])
        if not self.fast:
            return _synflow_round(self.scorer, self.weights, self.ones)
        # Non-negative weights, input and gradients: the score needs no abs here.
        scores = _synflow_round(self.scorer, self.weights, self.ones, fast=True)
        if torch.isfinite(torch.stack([s.sum() for s in scores.values()]).sum()):
            return scores
        self._float64()
        return self.scores(current)


def _synflow_round(
    scorer: nn.Module, weights: dict, ones: torch.Tensor, fast: bool = False
) -> Scores:
    """|θ ⊙ ∂R/∂θ|, written into the gradients; ``fast``: θ ⊙ ∂R/∂θ, and R is not checked
    (the caller checks the scores and falls back to float64)."""
    with torch.enable_grad():
        r = scorer(ones).sum()
        grads = torch.autograd.grad(r, list(weights.values()), allow_unused=True)
    if not fast and not torch.isfinite(r):
        raise ValueError(
            f"SynFlow's R = {float(r)} is not finite even in float64: the network is too deep "
            "or its weights too large for a data-free score; use another score"
        )
    scores = {}
    for (name, theta), g in zip(weights.items(), grads):
        if g is None:
            scores[name] = torch.zeros_like(theta, requires_grad=False)
        else:
            scores[name] = g.mul_(theta.detach()) if fast else g.mul_(theta.detach()).abs_()
    return scores


@torch.no_grad()
def _linearize(scorer: nn.Module) -> None:
    """|every parameter|; BatchNorm a positive affine map (eval mode, mean 0, variance 1)."""
    scorer.eval()
    for p in scorer.parameters():
        p.abs_()
    for layer in scorer.modules():
        if isinstance(layer, _BatchNorm) and layer.track_running_stats:
            layer.running_mean.zero_()
            layer.running_var.fill_(1.0)


def _mean_gradient(scorer, weights: dict, batches: list, loss: Callable) -> Scores:
    if not batches:
        raise ConfigError("this score needs data: give a dataloader with at least one batch")
    params = list(weights.values())
    total = [torch.zeros_like(p) for p in params]
    with torch.enable_grad():
        for batch in batches:
            for acc, g in zip(total, torch.autograd.grad(loss(scorer, batch), params)):
                acc += g / len(batches)
    return dict(zip(weights, total))


def _batch_loss(loss_fn, temperature: float, loss_of: Callable | None) -> Callable:
    """``loss(scorer, batch)``: ``loss_of``, else ``loss_fn`` of the logits / ``temperature``."""
    if loss_of is not None:
        return loss_of

    def loss(scorer: nn.Module, batch) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError("PaI scores need batches of the form (input, target, ...)")
        return loss_fn(scorer(batch[0]) / temperature, batch[1])

    return loss


# The private copy the scores are computed on.


def scoring_copy(
    module: nn.Module, include=None, exclude=None, dtype: torch.dtype | None = None
) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    """A deep copy of ``module`` whose weights are plain parameters equal to the effective θ,
    with ``{layer name: θ}`` of the selected layers (the only tensors requiring grad).

    ``SyncBatchNorm`` becomes a local BatchNorm, so scoring on one rank needs no other rank.
    """
    scorer = copy.deepcopy(module)
    for layer in scorer.modules():
        if parametrize.is_parametrized(layer):
            unparametrize_(layer)
        if isinstance(layer, nn.SyncBatchNorm):
            layer.__class__ = _LocalBatchNorm
    if dtype is not None:
        scorer.to(dtype)
    scorer.requires_grad_(False)
    weights = {name: layer.weight for name, layer in prunable_layers(scorer, include, exclude)}
    for theta in weights.values():
        theta.requires_grad_(True)
    return scorer, weights


class _LocalBatchNorm(_BatchNorm):
    """BatchNorm over any input rank, without synchronization."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        pass


# Data.


def device_of(module: nn.Module) -> torch.device:
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def to_device(data, device: torch.device):
    """``data`` with every tensor in it (in tuples, lists, dicts, nested) moved to ``device``;
    asynchronous where the copy can be (not to the CPU or MPS), as a training loop moves batches."""
    if isinstance(data, torch.Tensor):
        device = torch.device(device)
        return data.to(device, non_blocking=device.type not in ("cpu", "mps"))
    if isinstance(data, dict):
        return type(data)((key, to_device(value, device)) for key, value in data.items())
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # a namedtuple
        return type(data)(*(to_device(value, device) for value in data))
    if isinstance(data, (list, tuple)):
        return type(data)(to_device(value, device) for value in data)
    return data


def first_batches(dataloader: Iterable, num_batches: int, device: torch.device) -> list:
    """The first ``num_batches`` batches of ``dataloader``, moved to ``device``."""
    batches = itertools.islice(dataloader, num_batches)
    return [to_device(batch, device) for batch in batches]


def grasp_batches(module: nn.Module, dataloader: Iterable, samples_per_class: int) -> list:
    """GraSP's data (alecwangcq/GraSP, ``GraSP_fetch_data``): the first ``samples_per_class``
    examples of each class in the loader's order, concatenated class by class, as two halves
    (the reference takes g and H g over the two halves). The number of classes is the width of
    the module's output, read from one example in eval mode on a scoring copy."""
    device = device_of(module)
    inputs: dict[int, list] = {}
    num_classes = None
    for batch in dataloader:
        x, y = to_device(batch[:2], device)
        if num_classes is None:
            scorer, _ = scoring_copy(module)
            with torch.no_grad():
                num_classes = int(scorer.eval()(x[:1]).shape[-1])
        for example, label in zip(x, y.tolist()):
            chosen = inputs.setdefault(label, [])
            if len(chosen) < samples_per_class:
                chosen.append(example)
        full = [c for c in range(num_classes) if len(inputs.get(c, [])) == samples_per_class]
        if len(full) == num_classes:
            break
    else:
        short = [c for c in range(num_classes or 0) if len(inputs.get(c, [])) < samples_per_class]
        raise ConfigError(
            f"samples_per_class={samples_per_class} is invalid for this data: classes {short} "
            "have fewer examples in the training data"
        )
    x = torch.stack([e for c in range(num_classes) for e in inputs[c]])
    y = torch.tensor([c for c in range(num_classes) for _ in inputs[c]], device=device)
    half = len(y) // 2
    return [(x[:half], y[:half]), (x[half:], y[half:])]


def synflow_input_shape(module: nn.Module, batches: list) -> tuple[int, ...]:
    example = getattr(module, "example_input_array", None)
    if isinstance(example, torch.Tensor):
        return tuple(example.shape[1:])
    if batches and isinstance(batches[0], (tuple, list)):
        return tuple(batches[0][0].shape[1:])
    raise ConfigError(
        "score='synflow' needs the input shape: give input_shape, a dataloader, or set the "
        "module's example_input_array"
    )


def synflow_input_dtype(module: nn.Module, batches: list) -> torch.dtype:
    """float64, or the integer dtype of the module's inputs (token ids) where the example input
    or the first batch's input is an integer tensor."""
    example = getattr(module, "example_input_array", None)
    if not isinstance(example, torch.Tensor) and batches and isinstance(batches[0], (tuple, list)):
        example = batches[0][0]
    if isinstance(example, torch.Tensor) and not example.is_floating_point():
        return example.dtype
    return torch.float64
