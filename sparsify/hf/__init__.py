"""sparsify for users of Hugging Face's ``Trainer``: ``transformers.TrainerCallback`` adapters of
the plain-PyTorch core, without Lightning (docs/hf.md). Needs ``pip install "sparsify[hf]"``.

- ``MagnitudePruning``: GMP, ``sparsify.schedules.GradualMagnitudePruning``
  (the one the Lightning callback uses), pruning with ``sparsify.masks.magnitude_prune``;
- ``PruneAtEnd``: one-shot magnitude pruning when training ends, or before the last
  ``finetune_epochs`` epochs;
- ``WeightDecaySwitchOff``: weight decay until ``at``, then 0 (``sparsify.schedules.switch_off``);
- ``PILoT``: the adaptive α_t on exactly the m, w of θ = m ⊙ w, the rule
  ``sparsify.rules.PILoT``, once per epoch;
- ``SignIn``: θ = m ⊙ w on the kept weights, re-split every p epochs (``sparsify.rules.SignIn``);
- ``Reparametrize``: θ = m ⊙ w on every prunable weight when the ``Trainer`` is built;
- ``L1Penalty``: the gradient of λ‖θ‖₁ or λ‖m‖₁ added before every optimizer step;
- ``HAMStep``: the HAM step of ``sparsify.optim.HAM`` after every optimizer step.
- ``PruneAtInit``, ``SoftThresholdReparametrization``, ``ContinuousSparsification``: the rules of
  ``sparsify.rules`` (``hf.prune_at_init``, ``hf.soft_masks``), as the Lightning callbacks.

What differs from Lightning is only where things are read: progress from ``TrainerState``
(``global_step / max_steps``, ``epoch``), the optimizer and the learning-rate scheduler from the
callback arguments, and metrics from what the ``Trainer`` logs (``on_log``). The ``Trainer``
builds its optimizer when ``train()`` starts, so anything that replaces a weight by m, w
(``SignIn``, ``Reparametrize``, or ``sparsify.reparametrize`` called by you) must come before
that: ``SignIn`` and ``Reparametrize`` do it in ``on_init_end``, when the ``Trainer`` is
constructed. Resuming a ``Trainer`` run with these adapters from a checkpoint is not supported:
their state is not saved with it.
"""

from __future__ import annotations

from torch import nn
from transformers import TrainerCallback

from sparsify import rules
from sparsify.errors import ConfigError
from sparsify.hf.adapter import RuleTrainerCallback, epoch_index, trainer_progress
from sparsify.hf.ham_step import HAMStep  # noqa: F401
from sparsify.hf.l1 import L1Penalty  # noqa: F401
from sparsify.hf.pilot import PILoT  # noqa: F401
from sparsify.hf.prune_at_init import PruneAtInit  # noqa: F401
from sparsify.hf.reparametrize import Reparametrize  # noqa: F401
from sparsify.hf.sign_in import SignIn  # noqa: F401
from sparsify.hf.soft_masks import (
    ContinuousSparsification,  # noqa: F401
    SoftThresholdReparametrization,  # noqa: F401
)
from sparsify.masks import Scope, check_scope, check_sparsity, magnitude_prune
from sparsify.reparam import add_masks
from sparsify.schedules import GradualMagnitudePruning, Unit
from sparsify.soft_masks import harden


def progress(state, unit: Unit) -> float:
    """Optimizer steps taken (``step``), the current epoch's index (``epoch``), or the fraction
    of all steps taken (``fraction``), as the Lightning callbacks measure them."""
    return trainer_progress(state).at(unit)


class MagnitudePruning(GradualMagnitudePruning, TrainerCallback):
    """GMP (Zhu & Gupta 2017): before the first step at or after ``start``, every ``frequency``
    and ``end``, mask the smallest |θ| to the cubic target s_t (``final_sparsity`` from ``end``
    on). Arguments as ``sparsify.callbacks.MagnitudePruning``; ``unit`` ``fraction`` (of
    ``max_steps``), ``epoch`` or ``step``; ``pattern`` too. ``sparsity`` is the last target,
    ``last_pruned`` its time."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        length = {"epoch": state.num_train_epochs, "step": state.max_steps}.get(self.unit)
        if length is not None and self.end >= length:
            raise ConfigError(
                f"end={self.end:g} is invalid with unit={self.unit!r}: training has {length} "
                f"{self.unit}s, end must be smaller"
            )
        add_masks(model, self.include, self.exclude)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.prune_if_due(model, progress(state, self.unit))


class PruneAtEnd(TrainerCallback):
    """Mask the smallest |θ| to ``sparsity`` (``scope`` ``global`` or ``layer``) when training
    ends, or with ``finetune_epochs`` at the start of epoch ``num_train_epochs −
    finetune_epochs``, so the last epochs train under the fixed mask. Soft masks (STR, CS) are
    hardened first. ``pruned`` says whether it has pruned."""

    def __init__(
        self,
        sparsity: float,
        scope: Scope = "global",
        finetune_epochs: int = 0,
        include: list | None = None,
        exclude: list | None = None,
    ):
        self.sparsity = check_sparsity(sparsity)
        self.scope = check_scope(scope)
        if not (isinstance(finetune_epochs, int) and finetune_epochs >= 0):
            raise ConfigError(f"finetune_epochs={finetune_epochs!r} is invalid: an integer >= 0")
        self.finetune_epochs = finetune_epochs
        self.include, self.exclude = include, exclude
        self.pruned = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.finetune_epochs and self.finetune_epochs >= state.num_train_epochs:
            raise ConfigError(
                f"finetune_epochs={self.finetune_epochs} leaves no training before pruning with "
                f"num_train_epochs={state.num_train_epochs}: it must be smaller"
            )
        add_masks(model, self.include, self.exclude)

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        start = state.num_train_epochs - self.finetune_epochs
        if self.finetune_epochs and epoch_index(state) >= start:
            self.prune(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.prune(model)

    def prune(self, model: nn.Module) -> None:
        if not self.pruned:
            harden(model)
            magnitude_prune(model, self.sparsity, self.scope, self.include, self.exclude)
            self.pruned = True


class WeightDecaySwitchOff(rules.WeightDecaySwitchOff, RuleTrainerCallback):
    __doc__ = rules.WeightDecaySwitchOff.__doc__


class WeightDecaySchedule(rules.WeightDecaySchedule, RuleTrainerCallback):
    __doc__ = rules.WeightDecaySchedule.__doc__
