"""Gradual magnitude pruning (GMP) with the cubic schedule of Zhu & Gupta (2017).

"To prune, or not to prune: exploring the efficacy of pruning for model compression": between
``start`` = t₀ and ``end`` = t₁ the target sparsity is

    s_t = s_f + (s_i − s_f) · (1 − (t − t₀) / (t₁ − t₀))³

and every ``frequency`` the smallest effective weights |θ| are masked to reach it: fast at
first, while many weights are redundant, and slowly towards the end. After t₁ training goes on
under the final mask (fine-tuning).
"""

from __future__ import annotations

from torch import nn

from sparsify.errors import ConfigError
from sparsify.masks import (
    LAYER_FLOOR,
    Scope,
    check_layer_floor,
    check_pattern,
    check_scope,
    magnitude_prune,
)
from sparsify.reparam import add_masks
from sparsify.rules.base import LayerRule, Run
from sparsify.schedules import CubicPruningSchedule, Unit


class MagnitudePruning(LayerRule):
    """Prune the smallest |θ| to the cubic target ``s_t`` at ``start``, every ``frequency``
    after it, and at ``end``, where the sparsity is exactly ``final_sparsity``.

    Args:
        final_sparsity: s_f, reached at ``end`` and kept to the end of training.
        initial_sparsity: s_i, the target at ``start``.
        start: t₀, the first pruning, in ``unit`` (default 0.1: at 10 % of training).
        end: t₁, where ``final_sparsity`` is reached, in ``unit`` (default 0.75).
        frequency: Δt, the time between prunings, in ``unit`` (default 0.01: every 1 %).
        unit: ``"fraction"`` of all optimizer steps, ``"epoch"`` (pruning at the first step of
            an epoch) or optimizer ``"step"``.
        scope: ``"global"`` (one magnitude threshold over all selected weights) or ``"layer"``
            (every layer pruned to s_t).
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
        pattern: ``"unstructured"`` or ``"n:m"`` (e.g. ``"2:4"``): at most n kept weights in
            every group of m along a layer's input dimension (``sparsify.masks.select_mask``).
            A target s_t below 1 − n/m prunes to 1 − n/m (the pattern wins), so with a pattern
            the first pruning already reaches it and the schedule only adds sparsity above it.
        layer_floor: under the global threshold every layer keeps at least
            ``layer_floor · (1 − sparsity)`` of its weights (the same default, 0.2, in every
            global pruner; ``sparsify.masks.LAYER_FLOOR``); 0: the plain global threshold.

    Pruning happens before the forward pass of the first step at or after each scheduled time;
    the target of that scheduled time is used, so the value at t₁ is exactly s_f. Works on plain
    and reparametrized (m ⊙ w) models; masks are model buffers. The target is logged as
    ``gmp/sparsity``; the last pruning time is in the ``state_dict``, so a resumed run prunes at
    the same times as an uninterrupted one.
    """

    state_fields = ("last_pruned", "sparsity")

    def __init__(
        self,
        final_sparsity: float = 0.9,
        *,
        initial_sparsity: float = 0.0,
        start: float = 0.1,
        end: float = 0.75,
        frequency: float = 0.01,
        unit: Unit = "fraction",
        scope: Scope = "global",
        include: list | None = None,
        exclude: list | None = None,
        pattern: str = "unstructured",
        layer_floor: float = LAYER_FLOOR,
    ):
        self.schedule = CubicPruningSchedule(
            final_sparsity, initial_sparsity, start, end, frequency, unit
        )
        self.final_sparsity, self.unit = self.schedule.final_sparsity, unit
        self.scope = check_scope(scope)
        self.layer_floor = check_layer_floor(layer_floor)
        self.pattern = check_pattern(pattern)  # parsed once: NMPattern, or None
        self.include, self.exclude = include, exclude
        self.last_pruned: float | None = None
        self.sparsity = 0.0

    def check_length(self, length: float | None, unit: Unit, name: str) -> None:
        """Fail before training if ``end`` is not inside a run of ``length`` ``unit`` s (called
        ``name``)."""
        if self.unit == unit and length is not None and self.schedule.end >= length:
            raise ConfigError(
                f"end={self.schedule.end:g} is invalid with unit={unit!r} and {name}={length:g}: "
                f"final_sparsity is reached at the start of {unit} `end`, which must be < {name}"
            )

    def prepare(self, model: nn.Module) -> None:
        add_masks(model, self.layers(model))

    def start(self, run: Run) -> None:
        self.check_length(run.progress.total_epochs, "epoch", "epochs")
        self.check_length(run.progress.total_steps, "step", "steps")

    def before_step(self, run: Run) -> dict[str, float]:
        self.prune_if_due(run.model, run.progress.at(self.unit))
        return {"gmp/sparsity": self.sparsity}

    def prune_if_due(self, module: nn.Module, t: float) -> None:
        """At progress ``t``, prune ``module`` to the target of the latest scheduled time not yet
        pruned at (the target of that time, so the value at t₁ is exactly s_f)."""
        due = self.schedule.scheduled_time(t)
        if due is not None and (self.last_pruned is None or due > self.last_pruned):
            self.sparsity = self.schedule.target(due)
            if self.sparsity > 0:
                magnitude_prune(
                    module,
                    self.sparsity,
                    self.scope,
                    self.layers(module),
                    layer_floor=self.layer_floor,
                    pattern=self.pattern,
                )
            self.last_pruned = due
