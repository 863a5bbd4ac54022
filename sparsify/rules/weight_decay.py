"""Weight decay over training: one controller of the decay of chosen param groups, and the rule
that follows a schedule of training progress, e.g. switched off half-way.

Explicit regularization moves the implicit bias of m ⊙ w from L2 towards L1, and that move
lasts after the regularization stops (Mirror, Mirror of the Flow): weight decay can be switched
off part-way, keeping the sparse bias without the Lasso shrinkage of the surviving weights.
PILoT's α_t (``sparsify.rules.PILoT``) drives the same controller.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from sparsify.errors import ConfigError
from sparsify.param_groups import coupled_decay_warning, isolate, pointwise_parameters
from sparsify.rules.base import Rule, Run
from sparsify.schedules import Unit, check_unit, make_schedule

TARGETS = (None, "pointwise")


class WeightDecayController:
    """The weight decay of the selected param groups of every optimizer: all groups, the groups
    named in ``groups``, or (``pointwise=True``) exactly the groups of the reparametrized m, w,
    split out of mixed groups by ``attach``. ``capture`` records each selected group's base
    decay (``weight_decay`` in place of the optimizer's, times ``scale``) once; ``set_factor``
    sets base · factor, ``set_value`` one value."""

    def __init__(
        self,
        groups: list[str] | None = None,
        pointwise: bool = False,
        weight_decay: float | None = None,
        scale: float = 1.0,
    ):
        self.groups = None if groups is None else list(groups)
        self.pointwise = pointwise
        self.weight_decay = weight_decay
        self.scale = scale
        self.base: list[list[float]] | None = None
        self._ids: set[int] = set()

    def attach(self, run: Run, who: str, missing: str) -> None:
        """Split m, w into groups of their own (``pointwise``; ``missing``: the error where the
        optimizer has none); warn where the decay is coupled."""
        if self.pointwise:
            params = pointwise_parameters(run.model)
            if not isolate(run.optimizers, run.schedulers, params):
                raise ConfigError(missing)
            self._ids = {id(p) for p in params}
        if message := coupled_decay_warning(run.optimizers, who):
            warnings.warn(message, stacklevel=2)

    def selected(self, group: dict) -> bool:
        if self.pointwise:
            return bool(group["params"]) and all(id(p) in self._ids for p in group["params"])
        return self.groups is None or group.get("name") in self.groups

    def capture(self, run: Run) -> None:
        if self.base is None:
            self.base = [[self._base(g) for g in opt.param_groups] for opt in run.optimizers]

    def _base(self, group: dict) -> float:
        if not self.selected(group):
            return group["weight_decay"]
        base = group["weight_decay"] if self.weight_decay is None else self.weight_decay
        return base * self.scale

    def selected_bases(self, run: Run) -> list[float]:
        return [
            base
            for opt, bases in zip(run.optimizers, self.base)
            for group, base in zip(opt.param_groups, bases)
            if self.selected(group)
        ]

    def set_factor(self, run: Run, factor: float) -> None:
        for opt, bases in zip(run.optimizers, self.base):
            for group, base in zip(opt.param_groups, bases):
                if self.selected(group):
                    group["weight_decay"] = base * factor

    def set_value(self, run: Run, value: float) -> None:
        for opt in run.optimizers:
            for group in opt.param_groups:
                if self.selected(group):
                    group["weight_decay"] = value


class WeightDecaySchedule(Rule):
    """Set each selected param group's weight decay to ``base · schedule(progress)`` before
    every optimizer step, ``base`` being the group's weight decay when training started.

    Args:
        schedule: ``constant``, ``switch_off`` (1 before ``at``, 0 after), ``linear`` or
            ``cosine`` (to 0 at ``end``), ``exponential`` (``rate``^t), ``inverse`` (1/k),
            ``inverse_square`` (1/k²), or a callable of progress.
        unit: progress measured as a ``fraction`` of all training steps, in ``epoch`` s, or in
            optimizer ``step`` s.
        at: where ``switch_off`` sets the weight decay to 0, in ``unit``.
        end: where ``linear`` and ``cosine`` reach 0, in ``unit``.
        rate: the base of the ``exponential`` schedule.
        groups: names of the param groups to schedule (the ``name`` key of a group, e.g.
            ``["pointwise"]`` for the m, w of ``ImageClassifier``); ``None`` schedules all.
        target: ``"pointwise"`` schedules exactly the reparametrized m, w, whatever groups the
            module's optimizer puts them in: when the optimizer is built they are moved into a
            group of their own (``sparsify.param_groups``), the other parameters keep their
            weight decay. Excludes ``groups``.
        weight_decay: the base weight decay of the scheduled groups; ``None`` keeps the one the
            optimizer was built with.
        scale: multiplies the base weight decay of the scheduled groups, so one recipe sets a
            strength relative to whatever the experiment configured (``0`` switches it off for
            the whole run, ``4`` is four times as strong); groups built with weight decay 0 stay 0.

    Logs ``weight_decay/factor`` every step. The base values are in ``state_dict``, so a resumed
    run continues the schedule.
    """

    def __init__(
        self,
        schedule: str | Callable[[float], float] = "constant",
        unit: Unit = "fraction",
        at: float = 0.5,
        end: float = 1.0,
        rate: float = 0.9,
        groups: list[str] | None = None,
        target: str | None = None,
        weight_decay: float | None = None,
        scale: float = 1.0,
    ):
        self.unit = check_unit(unit)
        if target not in TARGETS:
            raise ConfigError(f"target={target!r} is invalid: choose None or 'pointwise'")
        if target is not None and groups is not None:
            raise ConfigError(
                f"target={target!r} is invalid together with groups={groups!r}: give one of them"
            )
        if weight_decay is not None and not weight_decay >= 0:
            raise ConfigError(f"weight_decay={weight_decay!r} is invalid: must be >= 0")
        if not scale >= 0:
            raise ConfigError(f"scale={scale!r} is invalid: must be >= 0")
        if unit == "fraction" and schedule == "switch_off" and not 0 <= at <= 1:
            raise ConfigError(f"at={at!r} is invalid with unit='fraction': must be in [0, 1]")
        if at < 0:
            raise ConfigError(f"at={at!r} is invalid: must be >= 0")
        self.schedule = make_schedule(schedule, at=at, end=end, rate=rate)
        self.schedule_name = schedule if isinstance(schedule, str) else "callable"
        self.groups = None if groups is None else list(groups)
        self.target = target
        self.weight_decay = weight_decay
        self.scale = scale
        self.decay = WeightDecayController(self.groups, target == "pointwise", weight_decay, scale)
        self.factor = 1.0

    @property
    def base(self) -> list[list[float]] | None:
        return self.decay.base

    def attach(self, run: Run) -> None:
        self.decay.attach(
            run,
            type(self).__name__,
            "target='pointwise' is invalid: the model has no reparametrized m, w in its optimizer "
            "(add the Reparametrize callback, or call sparsify.reparametrize on the model)",
        )

    def start(self, run: Run) -> None:
        if self.decay.base is None:
            self.decay.capture(run)
            selected = self.decay.selected_bases(run)
            if self.scale and selected and not any(selected):
                warnings.warn(
                    f"{type(self).__name__}: the base weight decay is 0 in every scheduled param "
                    "group (the optimizer was built with weight_decay=0), so the schedule does "
                    "nothing; give weight_decay=<base> to this callback, e.g. 5e-4 with SGD or "
                    "0.05 with AdamW",
                    stacklevel=2,
                )
        if self.groups is not None:
            present = {g.get("name") for opt in run.optimizers for g in opt.param_groups}
            missing = sorted(set(self.groups) - present)
            if missing:
                raise ConfigError(
                    f"groups={missing} matched no optimizer param group; named groups present: "
                    f"{sorted(str(n) for n in present if n is not None)}"
                )

    def before_step(self, run: Run) -> dict[str, float]:
        self.factor = float(self.schedule(run.progress.at(self.unit)))
        self.decay.set_factor(run, self.factor)
        return {"weight_decay/factor": self.factor}

    def state_dict(self) -> dict:
        return {"base": self.decay.base, "factor": self.factor}

    def load_state_dict(self, state_dict: dict) -> None:
        self.decay.base = state_dict["base"]
        self.factor = state_dict["factor"]


class WeightDecaySwitchOff(WeightDecaySchedule):
    """Weight decay as configured until ``at`` (a fraction of all steps by default, or an
    epoch or step with ``unit``), then 0 for the rest of training (Mirror, Mirror of the Flow).

    Args:
        at: where the weight decay becomes 0, in ``unit`` (default: half-way).
        unit: ``"fraction"`` of all training steps, ``"epoch"`` or optimizer ``"step"``.
        groups: names of the param groups to switch off; ``None``: all.
        target: ``"pointwise"``: exactly the reparametrized m, w (``WeightDecaySchedule``).
        weight_decay: the weight decay before ``at``; ``None`` keeps the optimizer's.
        scale: multiplies the weight decay before ``at``.
    """

    def __init__(
        self,
        at: float = 0.5,
        unit: Unit = "fraction",
        groups: list[str] | None = None,
        target: str | None = None,
        weight_decay: float | None = None,
        scale: float = 1.0,
    ):
        super().__init__(
            "switch_off",
            unit=unit,
            at=at,
            groups=groups,
            target=target,
            weight_decay=weight_decay,
            scale=scale,
        )
