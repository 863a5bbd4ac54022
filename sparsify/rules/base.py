"""The protocol of a method's rule: its state and decisions, free of any training framework.

A rule is driven by an adapter (``sparsify.callbacks`` for Lightning, ``sparsify.hf`` for Hugging
Face's ``Trainer``, or a plain loop) through eight events, in this order:

==================  ==========================================================================
``prepare(model)``  before the optimizer exists: put parametrizations (m ⊙ w, masks) on the model
``attach(run)``     the optimizer exists, nothing restored yet: split param groups
``start(run)``      training starts (a resumed run has its state back)
``epoch_start``     an epoch starts
``before_step``     before the forward pass of a training batch
``after_step``      after the optimizer step of that batch (``run.loss`` holds its loss)
``epoch_end``       an epoch ends (``run.metrics`` holds what was logged)
``end(run)``        training ends
==================  ==========================================================================

and, between ``before_step`` and ``after_step``, ``before_optimizer_step``: the gradients are in
and the optimizer in ``run.optimizers`` steps next (Lightning clips gradients after this event,
the ``Trainer`` before it).

Every event but ``prepare`` gets a ``Run``: the model, the optimizers and their learning-rate
schedulers, where training is (``Progress``), and the framework's ways to agree across processes.
An event may return a ``dict`` of values for the adapter to log. ``state_dict`` and
``load_state_dict`` hold what a resumed run needs.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sparsify.reparam import LayerSelection
from sparsify.schedules import Unit

Metrics = dict[str, float]


@dataclass(frozen=True)
class Progress:
    """Where training is: optimizer steps taken, the index of the epoch under way, the run's
    total steps and epochs (``None`` where a run is bounded by steps only)."""

    step: int
    epoch: int
    total_steps: int
    total_epochs: int | None = None

    def at(self, unit: Unit) -> float:
        """Progress in ``unit``: optimizer ``step`` s taken, the ``epoch`` index, or the
        ``fraction`` of all steps taken."""
        if unit == "step":
            return float(self.step)
        if unit == "epoch":
            return float(self.epoch)
        return self.step / max(1, self.total_steps)


def _same(value: Any) -> Any:
    return value


@dataclass
class Run:
    """What a rule acts on at one event.

    Attributes:
        model: the module being trained.
        optimizers: its optimizers; ``schedulers`` their learning-rate schedulers.
        scheduler_steps: when the framework steps each of ``schedulers``: ``(interval,
            frequency)``, every ``frequency``-th ``"step"`` or ``"epoch"``, or ``None`` where it
            steps on a metric (``ReduceLROnPlateau``).
        progress: where training is.
        metrics: values logged so far (at ``epoch_end``: the epoch's), by name.
        loss: the loss of the batch just trained (``after_step``), else ``None``.
        broadcast: gives every process rank 0's value (identity on one process).
        mean: the mean of a float over processes (identity on one process).
        mean_tensor: the elementwise mean of a tensor over processes (identity on one process).
        batches: the training batches, for rules that score on data; ``None`` where unknown.
        loss_of: ``loss_of(model, batch)``, the training loss of a batch, for those rules;
            ``None``: ``loss_fn(model(input), target)`` of an ``(input, target)`` batch.
        rank: this process's index among the processes (0 on one process): what rank 0
            decides is what ``broadcast`` gives every process.
    """

    model: nn.Module
    optimizers: list[torch.optim.Optimizer]
    progress: Progress
    schedulers: list = field(default_factory=list)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    loss: torch.Tensor | None = None
    broadcast: Callable[[Any], Any] = _same
    mean: Callable[[float], float] = _same
    mean_tensor: Callable[[torch.Tensor], torch.Tensor] = _same
    batches: Iterable | None = None
    loss_of: Callable[[nn.Module, Any], torch.Tensor] | None = None
    rank: int = 0
    scheduler_steps: list[tuple[str, int] | None] = field(default_factory=list)


class Rule:
    """A method's rule: subclasses override the events they need; every event is optional."""

    def prepare(self, model: nn.Module) -> None:
        """Before the optimizer is built."""

    def attach(self, run: Run) -> None:
        """The optimizer is built; its state is not restored yet."""

    def start(self, run: Run) -> Metrics | None:
        """Training starts."""

    def epoch_start(self, run: Run) -> Metrics | None:
        """An epoch starts."""

    def before_step(self, run: Run) -> Metrics | None:
        """Before the forward pass of a training batch."""

    def before_optimizer_step(self, run: Run) -> Metrics | None:
        """The gradients are computed; ``run.optimizers`` holds the optimizer that steps next."""

    def after_step(self, run: Run) -> Metrics | None:
        """After the optimizer step of a training batch."""

    def epoch_end(self, run: Run) -> Metrics | None:
        """An epoch ends."""

    def end(self, run: Run) -> Metrics | None:
        """Training ends."""

    def info(self, message: str) -> None:
        """Tell the user ``message`` (the ``sparsify`` logger; an adapter may say it once, on the
        process of rank 0)."""
        logging.getLogger("sparsify").info(message)

    def warn(self, message: str) -> None:
        """Warn the user (``warnings``; an adapter may warn once, on the process of rank 0)."""
        warnings.warn(message, stacklevel=3)

    state_fields: tuple[str, ...] = ()
    """The attributes a resumed run needs back; one that an older checkpoint lacks keeps the
    value the rule was built with."""

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.state_fields}

    def load_state_dict(self, state_dict: dict) -> None:
        for name in self.state_fields:
            if name in state_dict:
                setattr(self, name, state_dict[name])


class LayerRule(Rule):
    """A rule that acts on the layers ``include``/``exclude`` select. ``layers(model)`` resolves
    them once per model (the first event that sees it) into a ``LayerSelection``: every later
    prune, regrowth and report of the run acts on those layers, by name."""

    include: list | None = None
    exclude: list | None = None
    _resolved: tuple[weakref.ref, LayerSelection] | None = None

    def layers(self, model: nn.Module) -> LayerSelection:
        if self._resolved is None or self._resolved[0]() is not model:
            selection = LayerSelection.of(model, self.include, self.exclude)
            self._resolved = (weakref.ref(model), selection)
        return self._resolved[1]
