"""Weight decay that follows a schedule of training progress, e.g. switched off half-way.

Explicit regularization moves the implicit bias of m ⊙ w from L2 towards L1, and that move
lasts after the regularization stops (Mirror, Mirror of the Flow): weight decay can be switched
off part-way, keeping the sparse bias without the Lasso shrinkage of the surviving weights.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L

from sparsify.callbacks.progress import check_unit, progress
from sparsify.errors import ConfigError
from sparsify.schedules import make_schedule


class WeightDecaySchedule(L.Callback):
    """Set each selected param group's weight decay to ``base · schedule(progress)`` before
    every optimizer step, ``base`` being the group's weight decay when training started.

    Args:
        schedule: ``constant``, ``switch_off`` (1 before ``at``, 0 after), ``linear`` or
            ``cosine`` (to 0 at ``end``), ``exponential`` (``rate``^t), ``inverse`` (1/k),
            ``inverse_square`` (1/k²), or a callable of progress.
        unit: progress measured as a ``fraction`` of all training steps, in ``epoch`` s, or in
            optimizer ``step`` s.
        groups: names of the param groups to schedule (the ``name`` key of a group, e.g.
            ``["pointwise"]`` for the m, w of ``ImageClassifier``); ``None`` schedules all.

    The base values are in the callback's ``state_dict``, so a resumed run continues the schedule.
    """

    def __init__(
        self,
        schedule: str | Callable[[float], float] = "constant",
        unit: str = "fraction",
        at: float = 0.5,
        end: float = 1.0,
        rate: float = 0.9,
        groups: list[str] | None = None,
    ):
        self.unit = check_unit(unit)
        if unit == "fraction" and schedule == "switch_off" and not 0 <= at <= 1:
            raise ConfigError(f"at={at!r} is invalid with unit='fraction': must be in [0, 1]")
        if at < 0:
            raise ConfigError(f"at={at!r} is invalid: must be >= 0")
        self.schedule = make_schedule(schedule, at=at, end=end, rate=rate)
        self.groups = None if groups is None else list(groups)
        self.base: list[list[float]] | None = None
        self.factor = 1.0

    def _selected(self, group: dict) -> bool:
        return self.groups is None or group.get("name") in self.groups

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.base is None:
            optimizers = trainer.optimizers
            self.base = [[g["weight_decay"] for g in opt.param_groups] for opt in optimizers]
        if self.groups is not None:
            present = {g.get("name") for opt in trainer.optimizers for g in opt.param_groups}
            missing = sorted(set(self.groups) - present)
            if missing:
                raise ConfigError(
                    f"groups={missing} matched no optimizer param group; named groups present: "
                    f"{sorted(str(n) for n in present if n is not None)}"
                )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.factor = float(self.schedule(progress(trainer, self.unit)))
        for opt, bases in zip(trainer.optimizers, self.base):
            for group, base in zip(opt.param_groups, bases):
                if self._selected(group):
                    group["weight_decay"] = base * self.factor
        pl_module.log("weight_decay/factor", self.factor, on_step=True, on_epoch=False)

    def state_dict(self) -> dict:
        return {"base": self.base, "factor": self.factor}

    def load_state_dict(self, state_dict: dict) -> None:
        self.base = state_dict["base"]
        self.factor = state_dict["factor"]


class WeightDecaySwitchOff(WeightDecaySchedule):
    """Weight decay as configured until ``at`` (a fraction of all steps by default, or an
    epoch or step with ``unit``), then 0 for the rest of training."""

    def __init__(self, at: float = 0.5, unit: str = "fraction", groups: list[str] | None = None):
        super().__init__("switch_off", unit=unit, at=at, groups=groups)
