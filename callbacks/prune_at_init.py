"""Pruning at initialization: a mask chosen once, before the first optimizer step, then fixed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.state_key import argument_key
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
    pai_masks,
    reinit_permutations,
    reinitialize_,
)
from sparsify.reparam import add_masks


class PruneAtInit(PortableCheckpoint):
    """Mask the model to ``sparsity`` by a pruning-at-initialization ``score`` when training
    starts, once: ``random``, ``magnitude`` (|θ|), ``snip`` (|∂L/∂θ ⊙ θ|, Lee et al. 2019),
    ``grasp`` (θ ⊙ Hg, logits / ``temperature``, Wang et al. 2020) or ``synflow`` (data-free,
    ``rounds`` rounds, Tanaka et al. 2020); see ``sparsify.pai``.

    Args:
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

    The mask is computed in ``on_train_start`` (after the model is on its device and a
    checkpoint has been restored, before any optimizer step) on rank 0 only, from rank 0's
    batches, and broadcast, so every DDP process trains the same mask; the random draws of
    ``shuffle`` and ``reinitialize`` are rank 0's too, broadcast with the mask. ``setup`` gives the
    selected weights all-ones masks first, so a checkpoint written after pruning loads; ``done``
    is in the callback's ``state_dict``, so a resumed run keeps the checkpoint's mask instead of
    scoring again. Torch's random state is forked while scoring: the run draws the same data
    order and dropout whatever the score.
    """

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
        check_pattern(pattern)
        self.pattern = pattern
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

    @property
    def state_key(self) -> str:
        return argument_key(self, "score", "sparsity", "distribution", "pattern")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        add_masks(pl_module, self.include, self.exclude)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.done:
            return
        decided = None
        if trainer.is_global_zero:
            decided = self.decide(trainer, pl_module)
        new_masks, permutations = trainer.strategy.broadcast(decided, src=0)
        set_masks(pl_module, new_masks)
        if permutations is not None:
            reinitialize_(pl_module, permutations)
        self.done = True
        report = sparsity_report(pl_module, self.include, self.exclude)
        for logger in trainer.loggers:
            logger.log_metrics({"pai/sparsity": report["global"]}, step=trainer.global_step)
        rank_zero_info(
            f"PruneAtInit: {self.score} scores, {self.distribution} densities, sparsity "
            f"{report['global']:.4f}"
        )

    def decide(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple:
        """(the masks, the ``reinitialize`` permutations or ``None``), on the CPU, drawn from
        this process's random state without advancing it."""
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            masks = {k: v.bool().cpu() for k, v in self.compute(trainer, pl_module).items()}
            permutations = None
            if self.reinitialize:
                permutations = reinit_permutations(pl_module, self.include, self.exclude)
        return masks, permutations

    def compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        """The masks, from this process's model and training batches (``decide`` forks the
        random state around it)."""
        balanced = self.score == "grasp" and self.samples_per_class is not None
        if balanced:
            data = self.train_loader(trainer)
        elif self.score in DATA_SCORES + ("synflow",):
            data = self.batches(trainer)
        else:
            data = []
        return pai_masks(
            pl_module,
            self.sparsity,
            self.score,
            distribution=self.distribution,
            dataloader=data,
            loss_fn=self.loss_fn,
            num_batches=self.num_batches,
            dense_layers=self.dense_layers,
            include=self.include,
            exclude=self.exclude,
            temperature=self.temperature,
            rounds=self.rounds,
            samples_per_class=self.samples_per_class if balanced else None,
            pattern=self.pattern,
            synflow_precision=self.synflow_precision,
            score_mode=self.score_mode,
            invert=self.invert,
            shuffle=self.shuffle,
        )

    def batches(self, trainer: L.Trainer) -> list:
        """The first ``num_batches`` training batches, moved to the device as in training."""
        batches = []
        for batch in self.train_loader(trainer):
            batches.append(trainer.strategy.batch_to_device(batch))
            if len(batches) == self.num_batches:
                break
        return batches

    def train_loader(self, trainer: L.Trainer):
        """The trainer's (first) training dataloader."""
        loader = trainer.train_dataloader
        if isinstance(loader, Mapping):
            loader = next(iter(loader.values()))
        elif isinstance(loader, Sequence):
            loader = loader[0]
        if loader is None:
            raise ConfigError(f"score={self.score!r} needs training data; the trainer has none")
        return loader

    def state_dict(self) -> dict:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict) -> None:
        self.done = state_dict["done"]
