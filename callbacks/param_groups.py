"""The Lightning side of ``sparsify.param_groups``: split m, w into their own param groups in
every optimizer of a trainer, and warn where a weight-decay method drives coupled decay.

Call ``isolate_pointwise`` from ``on_fit_start``: Lightning runs that hook after the optimizers
are built and *before* it restores their state from a checkpoint, so a resumed run has the same
groups as the run that wrote the checkpoint.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from sparsify import param_groups
from sparsify.param_groups import GROUP_NAME, pointwise_parameters


def isolate_pointwise(trainer: L.Trainer, pl_module: L.LightningModule) -> list[dict]:
    """Split every optimizer group that mixes m, w with other parameters (see
    ``sparsify.param_groups``). Returns the groups, over all optimizers, that hold only m, w."""
    return isolate(trainer, pointwise_parameters(pl_module), GROUP_NAME)


def isolate(trainer: L.Trainer, params: list[nn.Parameter], name: str) -> list[dict]:
    """``isolate_pointwise`` for any ``params``: split them out of every mixed group into groups
    named ``name``; return the groups, over all optimizers, that hold only ``params``."""
    schedulers = [c.scheduler for c in trainer.lr_scheduler_configs]
    return param_groups.isolate(trainer.optimizers, schedulers, params, name)


def warn_coupled_decay(trainer: L.Trainer, who: str) -> None:
    """Warn once per fit when a weight-decay method drives an optimizer with coupled decay."""
    if message := param_groups.coupled_decay_warning(trainer.optimizers, who):
        rank_zero_warn(message)
