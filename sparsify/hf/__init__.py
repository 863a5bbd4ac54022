"""sparsify for users of Hugging Face's ``Trainer``: ``transformers.TrainerCallback`` adapters of
the plain-PyTorch core, without Lightning (docs/hf.md). Needs ``pip install "sparsify[hf]"``.

- ``MagnitudePruning``: GMP, the rule ``sparsify.rules.MagnitudePruning`` (as the Lightning
  callback);
- ``PruneAtEnd``: one-shot magnitude pruning when training ends, or before the last
  ``finetune_epochs`` epochs, the rule ``sparsify.rules.PruneAtEnd``;
- ``ACDC``, ``RiGL``: the rules ``sparsify.rules.ACDC`` and ``sparsify.rules.RiGL``, as the
  Lightning callbacks (RiGL's mask update replaces the optimizer step of its batch,
  ``on_pre_optimizer_step``);
- ``WeightDecaySwitchOff``: weight decay until ``at``, then 0 (``sparsify.schedules.switch_off``);
- ``PILoT``: the adaptive α_t on exactly the m, w of θ = m ⊙ w, the rule of
  ``sparsify.callbacks.PILoT`` (its ``update``), once per epoch;
- ``SignIn``: θ = m ⊙ w on the kept weights, re-split every p epochs (``sparsify.rescale_``).

What differs from Lightning is only where things are read: progress from ``TrainerState``
(``global_step / max_steps``, ``epoch``), the optimizer and the learning-rate scheduler from the
callback arguments, and metrics from what the ``Trainer`` logs (``on_log``). The ``Trainer``
builds its optimizer when ``train()`` starts, so anything that replaces a weight by m, w
(``SignIn``, or ``sparsify.reparametrize`` called by you) must come before that: ``SignIn`` does
it in ``on_init_end``, when the ``Trainer`` is constructed. Resuming a ``Trainer`` run with
these adapters from a checkpoint is not supported: their state is not saved with it.
"""

from __future__ import annotations

from torch import nn
from transformers import TrainerCallback

from sparsify import rules
from sparsify.callbacks.pilot import PILoT as PILoTRule
from sparsify.callbacks.pilot import pointwise_l1_norm
from sparsify.errors import ConfigError
from sparsify.hf.adapter import RuleTrainerCallback, epoch_index
from sparsify.param_groups import pointwise_groups, pointwise_parameters, split_groups
from sparsify.sign_flips import SignInRescale


def isolate_pointwise(model: nn.Module, optimizer, lr_scheduler) -> list[nn.Parameter]:
    """Move the m, w of ``model`` into param groups of their own (``split_groups``, which also
    extends the scheduler's per-group lists); return them."""
    params = pointwise_parameters(model)
    if not params:
        raise ConfigError(
            "the model has no reparametrized m, w: call sparsify.reparametrize(model) before "
            "building the Trainer, or add sparsify.hf.SignIn()"
        )
    split_groups(optimizer, params, [lr_scheduler] if lr_scheduler is not None else [])
    return params


class PILoT(TrainerCallback):
    """PILoT's penalty α_t (‖m‖² + ‖w‖²) (Mask in the Mirror, ICLR 2025) as the weight decay
    2 α_t of exactly the m, w of θ = m ⊙ w, updated when each epoch begins from the epoch before:

        α ← α·δ  if ``monitor`` improved, ‖m ⊙ w‖₁ ≥ K and k < T/2;   α ← α/δ  otherwise,

    with the epochs numbered k = 1 … T as in the paper.

    Arguments (``rule_options``: ``alpha_init``, ``delta``, ``l1_threshold``, ...) and rule are
    those of ``sparsify.callbacks.PILoT`` (whose ``update`` this calls), except the default
    ``monitor``: the ``Trainer`` computes no train accuracy, so it is the
    logged training ``loss``, lower being better (``mode="min"``). The value of an epoch is the
    mean of what the ``Trainer`` logged under ``monitor`` during it, evaluation included: set
    ``logging_strategy="epoch"`` (or ``logging_steps`` at most the steps of an epoch). The model
    must be reparametrized before the ``Trainer`` is built (``sparsify.reparametrize`` or
    ``SignIn``). ``history`` holds the α of every epoch."""

    def __init__(self, monitor: str = "loss", mode: str = "min", **rule_options):
        self.rule = PILoTRule(monitor=monitor, mode=mode, **rule_options)
        self.history: list[float] = []
        self.logged: list[float] = []
        self._pointwise: list[nn.Parameter] = []

    @property
    def alpha(self) -> float:
        return self.rule.alpha

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._pointwise = isolate_pointwise(model, optimizer, kwargs.get("lr_scheduler"))
        if self.rule.reference_norm is None:
            self.rule.reference_norm = pointwise_l1_norm(model)

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        epoch = epoch_index(state)
        if not self.rule.adaptive:
            self.rule.alpha = self.rule.alpha_init * float(self.rule.schedule(epoch))
        elif epoch > 0:
            if not self.logged:
                raise ConfigError(
                    f"monitor={self.rule.monitor!r} was not logged during epoch {epoch - 1}: set "
                    "logging_strategy='epoch' (or logging_steps <= the steps of an epoch)"
                )
            metric = sum(self.logged) / len(self.logged)
            l1_norm = pointwise_l1_norm(model)
            self.rule.update(metric, l1_norm, epoch - 1, state.num_train_epochs)
        self.logged = []
        self.history.append(self.rule.alpha)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and self.rule.monitor in logs:
            self.logged.append(float(logs[self.rule.monitor]))

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        for group in pointwise_groups(optimizer, self._pointwise):
            group["weight_decay"] = 2 * self.rule.alpha  # ∇ α‖p‖² = 2αp, as the Lightning PILoT


class SignIn(SignInRescale, TrainerCallback):
    """Sign-In (Sign-In to the Lottery, NeurIPS 2025): the selected weights (with any mask they
    have, e.g. from ``sparsify.prune_at_init``) become θ = m ⊙ w with m² − w² = ``beta`` when
    the ``Trainer`` is constructed (``on_init_end``, before it builds its optimizer), and each θ is
    re-split to m² − w² = ``beta`` at the start of every ``every_n_epochs``-th epoch (or every
    ``every_n_steps`` optimizer steps), θ unchanged: the schedule of
    ``sparsify.sign_flips.SignInRescale``, as in the Lightning callback. ``measurements`` holds,
    per epoch, the fraction of kept weights whose sign flipped since the first and since the
    last rescale and the mean inner scale (the Lightning callback's logged keys)."""

    measurements: list[dict[str, float]]

    def on_init_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if optimizer is not None:
            raise ConfigError(
                "SignIn is invalid with a Trainer given an optimizer: it replaces weights by m, w "
                "before the Trainer builds its optimizer; let the Trainer build it"
            )
        self.reparametrize(model)
        self.measurements = []

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        self.epoch_start(model, epoch_index(state), state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.step_end(model, state.global_step)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.measurements.append(self.measure(model))


class WeightDecaySwitchOff(rules.WeightDecaySwitchOff, RuleTrainerCallback):
    __doc__ = rules.WeightDecaySwitchOff.__doc__


class WeightDecaySchedule(rules.WeightDecaySchedule, RuleTrainerCallback):
    __doc__ = rules.WeightDecaySchedule.__doc__


class MagnitudePruning(rules.MagnitudePruning, RuleTrainerCallback):
    __doc__ = rules.MagnitudePruning.__doc__


class PruneAtEnd(rules.PruneAtEnd, RuleTrainerCallback):
    __doc__ = rules.PruneAtEnd.__doc__


class ACDC(rules.ACDC, RuleTrainerCallback):
    __doc__ = rules.ACDC.__doc__


class RiGL(rules.RiGL, RuleTrainerCallback):
    __doc__ = rules.RiGL.__doc__
