"""Schedules: pure functions of training progress ``t`` (in steps, epochs or a fraction of
training, whichever unit the caller measures) returning a multiplier or a target, and GMP's
pruning schedule, shared by the Lightning callbacks and the Hugging Face ``Trainer`` adapters.

``1/k`` and ``1/k²`` count from k = t + 1, so the factor is 1 at the start.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

from sparsify.errors import ConfigError, check_choice
from sparsify.masks import check_sparsity


def constant(t: float) -> float:
    return 1.0


def switch_off(t: float, at: float) -> float:
    """1 before ``at``, 0 from ``at`` on (Mirror, Mirror of the Flow: switch weight decay off)."""
    return 1.0 if t < at else 0.0


def linear(t: float, end: float) -> float:
    """1 at t = 0, falling linearly to 0 at ``end``."""
    return max(0.0, 1.0 - t / end)


def cosine(t: float, end: float) -> float:
    """(1 + cos(π t / end)) / 2 until ``end``, then 0."""
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t / end)))


def exponential(t: float, rate: float) -> float:
    """rate^t, e.g. 0.95^k."""
    return rate**t


def inverse(t: float) -> float:
    """1/k with k = t + 1."""
    return 1.0 / (t + 1)


def inverse_square(t: float) -> float:
    """1/k² with k = t + 1."""
    return 1.0 / (t + 1) ** 2


def cubic_sparsity(t: float, start: float, end: float, s_init: float, s_final: float) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i − s_f)(1 − (t − t₀)/(t₁ − t₀))³ for t₀ ≤ t ≤ t₁."""
    progress = min(1.0, max(0.0, (t - start) / (end - start)))
    return s_final + (s_init - s_final) * (1 - progress) ** 3


Unit = Literal["fraction", "epoch", "step"]
UNITS = get_args(Unit)


def check_unit(unit: Unit) -> Unit:
    check_choice("unit", unit, Unit)
    return unit


class CubicPruningSchedule:
    """When gradual magnitude pruning (GMP, Zhu & Gupta 2017) prunes, and to what sparsity: at
    ``start`` = t₀, every ``frequency`` after it, and at ``end`` = t₁, to the cubic target s_t of
    ``cubic_sparsity`` (``initial_sparsity`` s_i at t₀, ``final_sparsity`` s_f from t₁ on), with
    progress in ``unit``: a ``fraction`` of all optimizer steps, ``epoch`` s or ``step`` s.
    The schedule of the GMP rule, ``sparsify.rules.MagnitudePruning``.

    Args:
        final_sparsity: s_f, reached at ``end`` and kept to the end of training.
        initial_sparsity: s_i, the target at ``start``.
        start: t₀, the first pruning, in ``unit`` (default 0.1: at 10 % of training).
        end: t₁, where ``final_sparsity`` is reached, in ``unit`` (default 0.75).
        frequency: Δt, the time between prunings, in ``unit`` (default 0.01: every 1 %).
        unit: ``"fraction"`` of all optimizer steps, ``"epoch"`` (pruning at the first step of
            an epoch) or optimizer ``"step"``.
    """

    def __init__(
        self,
        final_sparsity: float = 0.9,
        initial_sparsity: float = 0.0,
        start: float = 0.1,
        end: float = 0.75,
        frequency: float = 0.01,
        unit: Unit = "fraction",
    ):
        self.final_sparsity = check_sparsity(final_sparsity)
        self.initial_sparsity = check_sparsity(initial_sparsity)
        if initial_sparsity > final_sparsity:
            raise ConfigError(
                f"initial_sparsity={initial_sparsity!r} is invalid: must be <= final_sparsity "
                f"({final_sparsity!r})"
            )
        self.unit = check_unit(unit)
        if not 0 <= start < end:
            raise ConfigError(f"start={start!r}, end={end!r} is invalid: need 0 <= start < end")
        if unit == "fraction" and end > 1:
            raise ConfigError(f"end={end!r} is invalid with unit='fraction': must be <= 1")
        if not frequency > 0:
            raise ConfigError(f"frequency={frequency!r} is invalid: must be > 0")
        self.start, self.end, self.frequency = float(start), float(end), float(frequency)

    def scheduled_time(self, t: float) -> float | None:
        """The latest pruning time ≤ t: start + k · frequency, or end; None before start."""
        if t < self.start:
            return None
        if t >= self.end:
            return self.end
        # The tolerance counts 0.3 / 0.1 as 3 whole periods, not 2.999….
        periods = math.floor((t - self.start) / self.frequency + 1e-9)
        return min(self.end, self.start + periods * self.frequency)

    def target(self, t: float) -> float:
        """The cubic target sparsity s_t at progress t."""
        return cubic_sparsity(t, self.start, self.end, self.initial_sparsity, self.final_sparsity)


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "switch_off": switch_off,
    "linear": linear,
    "cosine": cosine,
    "exponential": exponential,
    "inverse": inverse,
    "inverse_square": inverse_square,
}

# The keyword arguments each named schedule takes from its caller.
SCHEDULE_ARGS = {
    "constant": (),
    "switch_off": ("at",),
    "linear": ("end",),
    "cosine": ("end",),
    "exponential": ("rate",),
    "inverse": (),
    "inverse_square": (),
}


def make_schedule(
    schedule: str | Callable[[float], float], at: float = 0.5, end: float = 1.0, rate: float = 0.9
) -> Callable[[float], float]:
    """A one-argument function of progress: a named schedule with its arguments, or a callable."""
    if callable(schedule):
        return schedule
    if schedule not in SCHEDULES:
        raise ConfigError(
            f"schedule={schedule!r} is invalid: choose one of {', '.join(SCHEDULES)} or a callable"
        )
    if schedule in ("linear", "cosine") and not end > 0:
        raise ConfigError(f"end={end!r} is invalid: must be > 0")
    if schedule == "exponential" and not rate > 0:
        raise ConfigError(f"rate={rate!r} is invalid: must be > 0")
    given = {"at": at, "end": end, "rate": rate}
    kwargs = {name: given[name] for name in SCHEDULE_ARGS[schedule]}
    fn = SCHEDULES[schedule]
    return lambda t: fn(t, **kwargs)


def pilot_update(
    alpha: float,
    delta: float,
    improved: bool,
    l1_norm: float,
    l1_threshold: float,
    k: int,
    total_epochs: int,
) -> float:
    """PILoT's adaptive regularization strength (Mask in the Mirror, ICLR 2025, Algorithm 1),
    after epoch ``k`` of T = ``total_epochs``, numbered k = 1 … T as in the paper: α·δ while the
    train accuracy improved, ‖m ⊙ w‖₁ ≥ K (``l1_threshold``) and k < T/2; otherwise α/δ."""
    grows = improved and l1_norm >= l1_threshold and k < total_epochs / 2
    return alpha * delta if grows else alpha / delta
