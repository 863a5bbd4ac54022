"""Pruning at initialization: a mask chosen once, before the first optimizer step, then fixed;
the scores are those of ``sparsify.pai``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from sparsify.errors import ConfigError, check_choice
from sparsify.masks import (
    check_distribution,
    check_pattern,
    check_sparsity,
    set_masks,
    sparsity_report,
)
from sparsify.pai import (
    DATA_SCORES,
    GRASP_TEMPERATURE,
    SYNFLOW_ROUNDS,
    ScoreMode,
    SynflowPrecision,
    check_pai_options,
    check_score,
    check_shuffle,
    device_of,
    pai_masks,
    reinit_permutations,
    reinitialize_,
)
from sparsify.reparam import add_masks
from sparsify.rules.base import LayerRule, Run


class PruneAtInit(LayerRule):
    """Mask the model to ``sparsity`` by a pruning-at-initialization ``score`` when training
    starts, once: ``random``, ``magnitude`` (|θ|), ``snip`` (|∂L/∂θ ⊙ θ|, Lee et al. 2019),
    ``grasp`` (θ ⊙ Hg, logits / ``temperature``, Wang et al. 2020) or ``synflow`` (data-free,
    ``rounds`` rounds, Tanaka et al. 2020); see ``sparsify.pai``.

    Args:
        sparsity: the target fraction of zero weights.
        score: ``"random"``, ``"magnitude"``, ``"snip"``, ``"grasp"`` or ``"synflow"``.
        distribution: ``global`` (one threshold on the scores), ``uniform`` or ``erk`` layer
            densities (``sparsify.masks.layer_densities``).
        dense_layers: layers kept whole, counted in the target (patterns, ``"first"``,
            ``"last"``); ``include`` / ``exclude`` choose the layers that take part at all.
        num_batches: batches of the trainer's training data that ``snip`` scores on (and
            ``grasp`` with ``samples_per_class=None``; ``synflow`` reads only the input shape
            from the first).
        samples_per_class: ``grasp`` scores on the first this many examples of every class of
            the training data, as the reference does (alecwangcq/GraSP: 10;
            ``sparsify.pai.grasp_batches``); ``None``: the first ``num_batches`` batches.
        temperature: GraSP's temperature: the logits are divided by it (the reference: 200).
        rounds: SynFlow's pruning rounds, with density^(k/rounds) after round k (100).
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
        loss_fn: ``loss_fn(output, target)``; cross-entropy by default.
        pattern: ``"unstructured"`` or ``"n:m"`` (e.g. ``"2:4"``): at most n kept weights, the
            highest scores, in every group of m along a layer's input dimension
            (``sparsify.masks.select_mask``; a ``sparsity`` below 1 − n/m achieves 1 − n/m).
        synflow_precision: ``"mixed"`` (the first half of SynFlow's rounds in float64, the
            rest in float32), ``"float64"`` (exact) or ``"float32"`` (fastest); see
            ``sparsify.pai.pai_masks``.
        score_mode: the mode ``snip`` and ``grasp`` score in: ``"eval"`` (BatchNorm with the
            model's running statistics, dropout off) or ``"train"`` (batch statistics);
            ``"reference"`` (default): each score's reference, ``snip`` eval (Synaptic-Flow's
            prune loop) and ``grasp`` train (alecwangcq/GraSP).
        invert: sanity check: keep the lowest scores instead of the highest.
        shuffle: sanity check: permute each layer's mask at random after the selection (every
            layer keeps its density, the positions are random); not with an N:M ``pattern``.
        reinitialize: sanity check: after masking, give the weights new values from their
            layer's initial distribution (a random permutation of the layer's values,
            ``sparsify.pai.reinitialize_``); the mask is unchanged.

    The mask is computed when training starts (``start``: after the model is on its device and
    a checkpoint has been restored, before any optimizer step) on rank 0 only, from rank 0's
    batches, and broadcast, so every DDP process trains the same mask; the random draws of
    ``shuffle`` and ``reinitialize`` are rank 0's too, broadcast with the mask. ``prepare`` gives
    the selected weights all-ones masks first, so a checkpoint written after pruning loads;
    ``done`` is in the ``state_dict``, so a resumed run keeps the checkpoint's mask instead of
    scoring again. Torch's random state is forked while scoring: the run draws the same data
    order and dropout whatever the score. Logs ``pai/sparsity`` once.
    """

    state_fields = ("done",)

    def __init__(
        self,
        sparsity: float = 0.9,
        score: str = "random",
        distribution: str = "global",
        dense_layers: list | None = None,
        num_batches: int = 1,
        temperature: float = GRASP_TEMPERATURE,
        rounds: int = SYNFLOW_ROUNDS,
        include: list | None = None,
        exclude: list | None = None,
        loss_fn: Callable | None = None,
        samples_per_class: int | None = 10,
        pattern: str = "unstructured",
        synflow_precision: SynflowPrecision = "mixed",
        score_mode: ScoreMode = "reference",
        invert: bool = False,
        shuffle: bool = False,
        reinitialize: bool = False,
    ):
        self.sparsity = check_sparsity(sparsity)
        self.pattern = check_pattern(pattern)  # parsed once: NMPattern, or None
        self.score = check_score(score)
        self.distribution = check_distribution(distribution)
        check_pai_options(num_batches, temperature, rounds, samples_per_class)
        self.samples_per_class = samples_per_class
        self.dense_layers = dense_layers
        self.num_batches, self.temperature, self.rounds = num_batches, temperature, rounds
        self.include, self.exclude, self.loss_fn = include, exclude, loss_fn
        check_choice("synflow_precision", synflow_precision, SynflowPrecision)
        self.synflow_precision = synflow_precision
        check_choice("score_mode", score_mode, ScoreMode)
        check_shuffle(shuffle, pattern)
        self.score_mode = score_mode
        self.invert, self.shuffle, self.reinitialize = invert, shuffle, reinitialize
        self.done = False

    def prepare(self, model: torch.nn.Module) -> None:
        add_masks(model, self.layers(model))

    def start(self, run: Run) -> dict[str, float] | None:
        if self.done:
            return None
        decided = self.decide(run) if run.rank == 0 else None
        new_masks, permutations = run.broadcast(decided)
        set_masks(run.model, new_masks)
        if permutations is not None:
            reinitialize_(run.model, permutations)
        self.done = True
        report = sparsity_report(run.model, self.layers(run.model))
        return {"pai/sparsity": report["global"]}

    def decide(self, run: Run) -> tuple:
        """(the masks, the ``reinitialize`` permutations or ``None``), on the CPU, drawn from
        this process's random state without advancing it."""
        device = device_of(run.model)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            masks = {k: v.bool().cpu() for k, v in self.compute(run).items()}
            permutations = None
            if self.reinitialize:
                permutations = reinit_permutations(run.model, self.layers(run.model))
        return masks, permutations

    def compute(self, run: Run) -> dict:
        """The masks, from this process's model and training batches (``decide`` forks the
        random state around it)."""
        data = []
        if self.score in DATA_SCORES + ("synflow",):
            if run.batches is None:
                raise ConfigError(f"score={self.score!r} needs training data; the trainer has none")
            data = run.batches
        balanced = self.score == "grasp" and self.samples_per_class is not None
        return pai_masks(
            run.model,
            self.sparsity,
            self.score,
            distribution=self.distribution,
            dataloader=data,
            loss_fn=self.loss_fn,
            loss_of=run.loss_of,
            num_batches=self.num_batches,
            dense_layers=self.dense_layers,
            include=self.layers(run.model),
            temperature=self.temperature,
            rounds=self.rounds,
            samples_per_class=self.samples_per_class if balanced else None,
            pattern=self.pattern,
            synflow_precision=self.synflow_precision,
            score_mode=self.score_mode,
            invert=self.invert,
            shuffle=self.shuffle,
        )
