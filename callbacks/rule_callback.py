"""The Lightning adapter of a rule (``sparsify.rules``): Lightning's hooks call the rule's events.

A method's callback is its rule plus this class, with the rule's name and arguments::

    class WeightDecaySwitchOff(rules.WeightDecaySwitchOff, RuleCallback):
        __doc__ = rules.WeightDecaySwitchOff.__doc__

==========================  =========================================================
Lightning hook              rule event
==========================  =========================================================
``setup`` (fit)             ``prepare``: before ``configure_optimizers``
``on_fit_start``            ``attach``: optimizers built, checkpoint not yet restored
``on_train_start``          ``start``
``on_train_epoch_start``    ``epoch_start``
``on_train_batch_start``    ``before_step``
``on_train_batch_end``      ``after_step`` (``run.loss``: what ``training_step`` returned)
``on_train_epoch_end``      ``epoch_end`` (``run.metrics``: ``trainer.callback_metrics``)
``on_train_end``            ``end``
==========================  =========================================================
``on_before_optimizer_step`` (the gradients are in, the optimizer steps next) calls
``before_optimizer_step``.

``on_before_optimizer_step`` calls ``before_optimizer_step`` (``run.optimizers``: the optimizer
about to step; Lightning clips the gradients after it).

What an event returns is logged: per step from the step events, per epoch (reduced over
processes) from the others. ``state_dict`` is the rule's, saved in every checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from sparsify.rules.base import Progress, Rule, Run


def lightning_progress(trainer: L.Trainer) -> Progress:
    """Where a Lightning trainer is."""
    return Progress(
        trainer.global_step,
        trainer.current_epoch,
        int(trainer.estimated_stepping_batches),
        trainer.max_epochs if (trainer.max_epochs or 0) > 0 else None,
    )


def lightning_run(trainer: L.Trainer, pl_module: L.LightningModule, **fields) -> Run:
    """The ``Run`` of a Lightning trainer at this moment."""
    progress = lightning_progress(trainer)
    strategy = trainer.strategy
    fields.setdefault("batches", training_batches(trainer))
    return Run(
        model=pl_module,
        optimizers=trainer.optimizers,
        progress=progress,
        schedulers=[config.scheduler for config in trainer.lr_scheduler_configs],
        broadcast=lambda value: strategy.broadcast(value, src=0),
        mean=lambda value: float(strategy.reduce(torch.tensor(value), reduce_op="mean")),
        mean_tensor=lambda tensor: strategy.reduce(tensor, reduce_op="mean"),
        rank=trainer.global_rank,
        scheduler_steps=[scheduler_steps(config) for config in trainer.lr_scheduler_configs],
        **fields,
    )


def scheduler_steps(config) -> tuple[str, int] | None:
    """When Lightning steps the scheduler of ``config`` (``Run.scheduler_steps``)."""
    return None if config.reduce_on_plateau else (config.interval, config.frequency)


class TrainingBatches:
    """The batches of a trainer's (first) training dataloader, moved to the device as in
    training, read when iterated."""

    def __init__(self, trainer: L.Trainer, loader):
        self.trainer, self.loader = trainer, loader

    def __iter__(self):
        for batch in self.loader:
            yield self.trainer.strategy.batch_to_device(batch)


def training_batches(trainer: L.Trainer) -> TrainingBatches | None:
    """``TrainingBatches`` of the trainer's (first) training dataloader; ``None`` without one."""
    loader = trainer.train_dataloader
    if isinstance(loader, Mapping):
        loader = next(iter(loader.values()), None)
    elif isinstance(loader, Sequence):
        loader = loader[0] if loader else None
    return None if loader is None else TrainingBatches(trainer, loader)


class RuleCallback(L.Callback):
    """Lightning hooks → the events of the ``Rule`` this class is mixed with (the rule comes
    first in the bases, so its ``state_dict`` is the one saved)."""

    prepares_every_stage = False
    """True for a rule that puts masks or m ⊙ w on the model: it prepares in validate and test
    too, so that a checkpoint of the run loads."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" or self.prepares_every_stage:
            self.prepare(pl_module)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.attach(lightning_run(trainer, pl_module))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(pl_module, self.start(lightning_run(trainer, pl_module)), step=False)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(pl_module, self.epoch_start(lightning_run(trainer, pl_module)), step=False)

    # The step events run at every batch: a rule that leaves one as Rule's no-op skips building
    # its Run there.
    def _acts_on(self, event: str) -> bool:
        return getattr(type(self), event) is not getattr(Rule, event)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._acts_on("before_step"):
            self._log(pl_module, self.before_step(lightning_run(trainer, pl_module)), step=True)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self._acts_on("before_optimizer_step"):
            return
        run = dataclasses.replace(lightning_run(trainer, pl_module), optimizers=[optimizer])
        self._log(pl_module, self.before_optimizer_step(run), step=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._acts_on("after_step"):
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        run = lightning_run(trainer, pl_module, loss=loss)
        self._log(pl_module, self.after_step(run), step=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run = lightning_run(trainer, pl_module, metrics=trainer.callback_metrics)
        self._log(pl_module, self.epoch_end(run), step=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end(lightning_run(trainer, pl_module))

    def info(self, message: str) -> None:
        rank_zero_info(message)

    def warn(self, message: str) -> None:
        rank_zero_warn(message)

    @staticmethod
    def _log(pl_module: L.LightningModule, metrics: dict | None, step: bool) -> None:
        if not metrics:
            return
        if step:
            pl_module.log_dict(metrics, on_step=True, on_epoch=False)
        else:
            pl_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True)
