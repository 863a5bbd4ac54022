"""Gradual magnitude pruning (GMP) with the cubic schedule of Zhu & Gupta (2017).

"To prune, or not to prune: exploring the efficacy of pruning for model compression": between
``start`` = t₀ and ``end`` = t₁ the target sparsity is

    s_t = s_f + (s_i − s_f) · (1 − (t − t₀) / (t₁ − t₀))³

and every ``frequency`` the smallest effective weights |θ| are masked to reach it: fast at
first, while many weights are redundant, and slowly towards the end. After t₁ training goes on
under the final mask (fine-tuning).
"""

from __future__ import annotations

import lightning as L

from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.progress import progress
from sparsify.callbacks.state_key import argument_key
from sparsify.errors import ConfigError
from sparsify.reparam import add_masks
from sparsify.schedules import GradualMagnitudePruning


class MagnitudePruning(GradualMagnitudePruning, PortableCheckpoint):
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

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.check_trainer(trainer)
        add_masks(pl_module, self.include, self.exclude)

    def check_trainer(self, trainer: L.Trainer) -> None:
        """Fail before training if the final sparsity would be reached after the last epoch."""
        if self.unit == "epoch" and trainer.max_epochs is not None and trainer.max_epochs > 0:
            if self.end >= trainer.max_epochs:
                raise ConfigError(
                    f"end={self.end:g} is invalid with unit='epoch' and max_epochs="
                    f"{trainer.max_epochs}: final_sparsity is reached at the start of epoch "
                    "`end`, which must be < max_epochs"
                )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.unit == "step" and self.end >= trainer.estimated_stepping_batches:
            raise ConfigError(
                f"end={self.end:g} is invalid with unit='step': training has only "
                f"{trainer.estimated_stepping_batches} steps, end must be smaller"
            )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.prune_if_due(pl_module, progress(trainer, self.unit))
        pl_module.log("gmp/sparsity", self.sparsity, on_step=True, on_epoch=False)

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return argument_key(self, "final_sparsity", "include", "exclude", "pattern")

    def state_dict(self) -> dict:
        return {"last_pruned": self.last_pruned, "sparsity": self.sparsity}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_pruned = state_dict["last_pruned"]
        self.sparsity = state_dict["sparsity"]
