"""The Hugging Face adapter of a rule (``sparsify.rules``): ``TrainerCallback`` events call the
rule's events. A method's ``TrainerCallback`` is its rule plus this class, with the rule's name
and arguments, as the Lightning callback is::

    class WeightDecaySwitchOff(rules.WeightDecaySwitchOff, RuleTrainerCallback):
        __doc__ = rules.WeightDecaySwitchOff.__doc__

=====================  ==================================================================
``TrainerCallback``    rule event
=====================  ==================================================================
``on_init_end``        ``prepare``: the ``Trainer`` is built, its optimizer not yet
``on_train_begin``     ``attach``, then ``start``
``on_epoch_begin``     ``epoch_start``
``on_step_begin``      ``before_step``
``on_step_end``        ``after_step``
``on_epoch_end``       ``epoch_end``, once the epoch's logs are in (``run.metrics``: the mean
                       of each value logged in the epoch)
``on_train_end``       ``end``
=====================  ==================================================================
``on_pre_optimizer_step`` (the gradients are in, the optimizer steps next) calls
``before_optimizer_step``.

``on_pre_optimizer_step`` calls ``before_optimizer_step`` (the ``Trainer`` has clipped the
gradients by then).

The ``Trainer`` logs an epoch after ``on_epoch_end``, so ``epoch_end`` runs when those logs are in:
at the next ``on_epoch_begin`` or at ``on_train_end``, with nothing trained in between.
Progress is read from ``TrainerState`` (``global_step``, ``max_steps``, ``epoch``,
``num_train_epochs``). What the events return is kept in ``logged`` (one dict per event, with
its ``step``), as a ``Trainer`` callback cannot log to the ``Trainer``'s own loggers. Resuming a
``Trainer`` run from a checkpoint does not restore a rule's state.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import ReduceLROnPlateau
from transformers import TrainerCallback

from sparsify.rules.base import Progress, Run


def epoch_index(state) -> int:
    """The index of the epoch under way (``TrainerState.epoch`` counts fractions of epochs)."""
    return math.floor((state.epoch or 0.0) + 1e-9)


def _broadcast(value):
    if dist.is_available() and dist.is_initialized():
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value


def _mean(value: float) -> float:
    if dist.is_available() and dist.is_initialized():
        box = [None] * dist.get_world_size()
        dist.all_gather_object(box, value)
        return sum(box) / len(box)
    return value


def _mean_tensor(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor / dist.get_world_size()
    return tensor


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def model_loss(model, batch: dict):
    """The loss a ``Trainer`` trains on: the model's own, ``model(**batch)["loss"]``."""
    return model(**batch)["loss"]


def scheduler_steps(scheduler) -> tuple[str, int] | None:
    """The ``Trainer`` steps its scheduler after every optimizer step, a ``ReduceLROnPlateau``
    after every evaluation (``Run.scheduler_steps``)."""
    return None if isinstance(scheduler, ReduceLROnPlateau) else ("step", 1)


def trainer_progress(state, epoch: int | None = None) -> Progress:
    """Where a Hugging Face ``Trainer`` is (in epoch ``epoch``, by default the one ``state`` is
    in)."""
    return Progress(
        state.global_step,
        epoch_index(state) if epoch is None else epoch,
        state.max_steps,
        math.ceil(state.num_train_epochs) if state.num_train_epochs else None,
    )


def trainer_run(state, kwargs: dict, epoch: int | None = None, **fields) -> Run:
    """The ``Run`` of a Hugging Face ``Trainer`` at this event (in epoch ``epoch``, by default the
    one ``state`` is in)."""
    progress = trainer_progress(state, epoch)
    optimizer = kwargs.get("optimizer")
    scheduler = kwargs.get("lr_scheduler")
    return Run(
        model=kwargs["model"],
        optimizers=[] if optimizer is None else [optimizer],
        progress=progress,
        schedulers=[] if scheduler is None else [scheduler],
        broadcast=_broadcast,
        mean=_mean,
        mean_tensor=_mean_tensor,
        batches=kwargs.get("train_dataloader"),
        loss_of=model_loss,
        rank=_rank(),
        scheduler_steps=[] if scheduler is None else [scheduler_steps(scheduler)],
        **fields,
    )


class RuleTrainerCallback(TrainerCallback):
    """``TrainerCallback`` events → the events of the ``Rule`` this class is mixed with (the rule
    comes first in the bases)."""

    logged: list[dict]
    _epoch_logs: list[dict]
    _ending: int | None  # the epoch whose epoch_end waits for its logs

    def _keep(self, state, metrics: dict | None) -> None:
        if metrics:
            self.logged.append({"step": state.global_step, **metrics})

    def on_init_end(self, args, state, control, model=None, **kwargs):
        self.logged, self._epoch_logs, self._ending = [], [], None
        self.prepare(model)

    def on_train_begin(self, args, state, control, **kwargs):
        run = trainer_run(state, kwargs)
        self.attach(run)
        self._keep(state, self.start(run))

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._end_epoch(state, kwargs)
        self._keep(state, self.epoch_start(trainer_run(state, kwargs)))

    def on_step_begin(self, args, state, control, **kwargs):
        self._keep(state, self.before_step(trainer_run(state, kwargs)))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._keep(state, self.before_optimizer_step(trainer_run(state, kwargs)))

    def on_step_end(self, args, state, control, **kwargs):
        self._keep(state, self.after_step(trainer_run(state, kwargs)))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self._epoch_logs.append(logs)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._ending = math.ceil(state.epoch - 1e-9) - 1

    def on_train_end(self, args, state, control, **kwargs):
        self._end_epoch(state, kwargs)
        self._keep(state, self.end(trainer_run(state, kwargs)))

    def _end_epoch(self, state, kwargs: dict) -> None:
        if self._ending is not None:
            metrics = {}
            for name in {name for logs in self._epoch_logs for name in logs}:
                values = [logs[name] for logs in self._epoch_logs if name in logs]
                metrics[name] = sum(map(float, values)) / len(values)
            run = trainer_run(state, kwargs, epoch=self._ending, metrics=metrics)
            self._keep(state, self.epoch_end(run))
        self._ending, self._epoch_logs = None, []
