"""``PILoT`` for Hugging Face's ``Trainer``: the adapter of ``sparsify.rules.PILoT``."""

from __future__ import annotations

from collections.abc import Callable

from sparsify import rules
from sparsify.hf.adapter import RuleTrainerCallback
from sparsify.rules.base import Run
from sparsify.rules.pilot import MonitorMode


class PILoT(rules.PILoT, RuleTrainerCallback):
    __doc__ = rules.PILoT.__doc__ + (
        """
    Under the ``Trainer`` the defaults are ``monitor="loss"``, ``mode="min"`` (``None`` means
    ``"loss"`` too): the ``Trainer`` computes no train accuracy and its callbacks do not see the
    loss of each step, so the rule follows the logged training ``loss``, lower being better.
    The value of an epoch is the mean of what the ``Trainer`` logged under ``monitor`` during
    it, evaluation included: set ``logging_strategy="epoch"`` (or ``logging_steps`` at most the
    steps of an epoch), or give ``monitor="eval_accuracy", mode="max"`` with an evaluation
    every epoch. ``sparsity`` must be given for ``outside_top_tolerance`` (a callback cannot see
    the other callbacks of a ``Trainer``). The model must be reparametrized before the
    ``Trainer`` is built (``sparsify.hf.Reparametrize`` or ``SignIn`` in its callbacks, or
    ``sparsify.reparametrize``).
    """
    )

    def __init__(
        self,
        alpha_init: float = 1e-3,
        delta: float = 1.2,
        l1_threshold: float = 0.5,
        l1_threshold_relative: bool = True,
        schedule: str | Callable[[float], float] = "adaptive",
        rate: float = 0.95,
        monitor: str | None = "loss",
        mode: MonitorMode = "min",
        sparsity: float | None = None,
        outside_top_tolerance: float | None = None,
        K: float | None = None,
        K_relative: bool | None = None,
    ):
        super().__init__(
            alpha_init=alpha_init,
            delta=delta,
            l1_threshold=l1_threshold,
            l1_threshold_relative=l1_threshold_relative,
            schedule=schedule,
            rate=rate,
            monitor="loss" if monitor is None else monitor,
            mode=mode,
            sparsity=sparsity,
            outside_top_tolerance=outside_top_tolerance,
            K=K,
            K_relative=K_relative,
        )

    missing_factors = (
        "the model has no reparametrized m, w: add sparsify.hf.Reparametrize() or "
        "sparsify.hf.SignIn() before PILoT, or call sparsify.reparametrize(model) before "
        "building the Trainer"
    )

    def missing_metric(self, run: Run) -> str:
        return (
            f"monitor={self.monitor!r} was not logged during epoch {run.progress.epoch}: set "
            "logging_strategy='epoch' (or logging_steps <= the steps of an epoch)"
        )
