"""One-shot magnitude pruning at the end of training, optionally followed by fine-tuning."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from sparsify.dst import restart_
from sparsify.errors import ConfigError
from sparsify.masks import (
    LAYER_FLOOR,
    Scope,
    check_layer_floor,
    check_pattern,
    check_scope,
    check_sparsity,
    magnitude_prune,
    sparsity_report,
)
from sparsify.reparam import add_masks, prunable_layers
from sparsify.rules.base import LayerRule, Run
from sparsify.soft_masks import harden

Regrow = Literal["random"]


class PruneAtEnd(LayerRule):
    """Mask the smallest effective weights |θ| to reach ``sparsity`` (``scope`` ``"global"``: one
    threshold over all prunable weights, ``"layer"``: the same sparsity in every layer).

    Under the global threshold every layer keeps at least ``layer_floor · (1 − sparsity)`` of
    its weights (default 0.2: at sparsity 0.9 no layer goes beyond 98 %), the threshold being
    solved again for the other layers (``sparsify.masks.layer_densities``); ``layer_floor=0``
    is the plain global threshold, which can empty a layer holding small weights (a wide
    first layer). A layer that ends above 99 % sparsity is named in a warning.

    With ``finetune_epochs = 0`` it prunes when training ends; otherwise at the start of epoch
    ``max_epochs − finetune_epochs``, so the last ``finetune_epochs`` epochs train under the
    fixed mask. The validation metric ``monitor`` just before pruning and at the end is kept in
    ``before`` / ``after`` and printed; ``unpruned_state_dict`` holds the model (on the CPU) as
    it was before pruning, for evaluating it again. Soft masks (STR, CS) are hardened
    (``sparsify.soft_masks.harden``) before pruning. Masks are model buffers: a checkpoint written
    after pruning resumes with them.

    A weight that is exactly 0 when pruning starts is never kept by magnitude (``select_mask``):
    if the method has learned more sparsity than ``sparsity`` (CS, STR with a strong penalty),
    the learned mask is kept whole, the achieved sparsity is printed and stored in
    ``achieved``, and it is higher than asked. ``regrow="random"`` fills the target instead:
    zero weights chosen uniformly at random (seed ``regrow_seed``, the same on every rank)
    join the mask at 0 with their optimizer state (momentum, Adam moments) cleared.

    Under Lightning a checkpoint never hands over a model short of the target: when it prunes,
    every ``ModelCheckpoint`` that monitors a metric forgets its ranking, so only checkpoints of
    the pruned model compete for ``best_model_path`` (the dense files stay on disk, unranked),
    and at the end of training the pruned model is saved as ``pruned.ckpt`` in that callback's
    folder; it becomes ``best_model_path`` where no fine-tuned checkpoint was ranked (no
    ``finetune_epochs``). The log says which checkpoints left the ranking.

    ``pattern="n:m"`` (e.g. ``"2:4"``) keeps at most n weights in every group of m along each
    layer's input dimension (``sparsify.masks.select_mask``); a ``sparsity`` below 1 − n/m
    achieves 1 − n/m (the pattern wins), a higher one is chosen by magnitude within the pattern.

    Args:
        sparsity: the target fraction of zero weights, in [0, 1).
        scope: ``"global"`` (one threshold, with the layer floor) or ``"layer"``.
        finetune_epochs: epochs trained under the mask after pruning; 0 prunes when training
            ends. Must be smaller than ``max_epochs``.
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
        monitor: the validation metric kept in ``before`` / ``after`` and printed.
        regrow: ``None`` keeps a learned mask that is sparser than the target; ``"random"``
            fills the target with zero weights chosen at random.
        regrow_seed: the seed of ``regrow="random"``, the same on every rank.
        layer_floor: under the global threshold every layer keeps at least
            ``layer_floor · (1 − sparsity)`` of its weights; 0: the plain global threshold.
        pattern: ``"unstructured"`` or ``"n:m"`` (e.g. ``"2:4"``).
    """

    state_fields = ("pruned", "before", "achieved", "pruned_epoch")

    def __init__(
        self,
        sparsity: float,
        scope: Scope = "global",
        finetune_epochs: int = 0,
        include: list | None = None,
        exclude: list | None = None,
        monitor: str = "val/acc",
        regrow: Regrow | None = None,
        regrow_seed: int = 0,
        layer_floor: float = LAYER_FLOOR,
        pattern: str = "unstructured",
    ):
        self.sparsity = check_sparsity(sparsity)
        self.pattern = check_pattern(pattern)  # parsed once: NMPattern, or None
        self.pattern_sparsity = 0.0 if self.pattern is None else self.pattern.sparsity
        if regrow is not None and regrow not in get_args(Regrow):
            raise ConfigError(
                f"regrow={regrow!r} is invalid: choose one of {', '.join(get_args(Regrow))}, or "
                "null to keep a learned mask that is sparser than the target"
            )
        self.regrow, self.regrow_seed = regrow, int(regrow_seed)
        self.scope = check_scope(scope)
        if finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs={finetune_epochs!r} is invalid: must be >= 0")
        self.finetune_epochs = int(finetune_epochs)
        self.include, self.exclude, self.monitor = include, exclude, monitor
        self.layer_floor = check_layer_floor(layer_floor)
        self.pruned = False
        self.pruned_epoch: int | None = None
        self.hardened = False
        self.before: float | None = None
        self.after: float | None = None
        self.unpruned_state_dict: dict | None = None
        self.achieved: float | None = None

    def check_epochs(self, epochs: int | None, name: str, hint: str = "") -> None:
        """Fail before training if fine-tuning would take the whole run of ``epochs`` (called
        ``name``)."""
        if self.finetune_epochs and (epochs is None or epochs <= self.finetune_epochs):
            raise ConfigError(
                f"finetune_epochs={self.finetune_epochs} leaves no training before pruning with "
                f"{name}={epochs}: it must be smaller than {name} ({hint}0 prunes when training "
                "ends)"
            )

    def prepare(self, model: nn.Module) -> None:
        add_masks(model, self.layers(model))

    def start(self, run: Run) -> None:
        self.check_epochs(run.progress.total_epochs, "epochs")

    def epoch_start(self, run: Run) -> dict[str, float] | None:
        first = (run.progress.total_epochs or 0) - self.finetune_epochs
        if self.finetune_epochs and run.progress.epoch >= first:
            return self.prune(run)
        return None

    def end(self, run: Run) -> dict[str, float] | None:
        logs = None
        if not self.pruned:
            logs = self.prune(run)
        elif self.finetune_epochs:
            self.after = self.metric(run)
        epoch = run.progress.epoch
        tuned = epoch - (self.pruned_epoch or epoch)
        self.info(
            f"PruneAtEnd: {self.monitor} {self.before} before pruning to sparsity "
            f"{self.achieved} (target {self.sparsity:.4g}), {self.after} after"
            + (f" {tuned} epoch(s) of fine-tuning" if tuned else " (not measured: no fine-tuning)")
        )
        return logs

    def prune(self, run: Run) -> dict[str, float] | None:
        """Prune once (``hardened`` says whether soft masks became plain masks); the achieved
        sparsity to log, or ``None`` where it had pruned already."""
        if self.pruned:
            return None
        model = run.model
        self.before = self.metric(run)
        # A learned soft mask (STR, CS) becomes a plain mask first, so that fine-tuning keeps
        # exactly the sparsity asked for and the saved weights load into the pruned model.
        self.hardened = bool(harden(model))
        state = model.state_dict()
        self.unpruned_state_dict = {k: v.detach().cpu().clone() for k, v in state.items()}
        zeros = {
            name: layer.weight.detach() == 0
            for name, layer in prunable_layers(model, self.layers(model))
        }
        new = magnitude_prune(
            model,
            self.sparsity,
            self.scope,
            self.layers(model),
            regrow=self.regrow_scores(zeros),
            layer_floor=self.layer_floor,
            pattern=self.pattern,
        )
        grown = {name: zeros[name] & (mask != 0) for name, mask in new.items()}
        restart_(model, grown, run.optimizers)
        self.pruned = True
        self.pruned_epoch = run.progress.epoch
        # Counted on the mask: a regrown weight is in it, though still 0.
        total = sum(z.numel() for z in zeros.values())
        self.achieved = 1 - sum(int((mask != 0).sum()) for mask in new.values()) / total
        expected = max(self.sparsity, self.pattern_sparsity)
        if self.achieved > expected + len(zeros) / total:  # more than rounding
            self.info(
                f"PruneAtEnd: only {1 - self.achieved:.4%} of the weights are non-zero, fewer than "
                f"the target sparsity {self.sparsity:.4g} keeps: the learned mask is kept, "
                f"achieved sparsity {self.achieved:.4f} (no exact zero is revived; "
                "regrow='random' fills the target)"
            )
        report = sparsity_report(model, self.layers(model))
        if message := collapsed_layers_warning(report, "PruneAtEnd"):
            self.warn(message)
        return {"prune/sparsity": self.achieved}

    def regrow_scores(self, zeros: dict) -> dict | None:
        """Uniform random scores for the ``random`` rule, from a generator of its own, so every
        rank draws the same ones and the run's random state is untouched."""
        if self.regrow is None:
            return None
        generator = torch.Generator().manual_seed(self.regrow_seed)
        return {
            name: torch.rand(z.shape, generator=generator).to(z.device) for name, z in zeros.items()
        }

    def metric(self, run: Run) -> float | None:
        value = run.metrics.get(self.monitor)
        return float(value) if isinstance(value, torch.Tensor) else value


def collapsed_layers_warning(
    report: dict,
    who: str,
    limit: float = 0.99,
    remedy: str = "use scope='layer', a larger layer_floor, or exclude them",
) -> str | None:
    """The warning naming the layers of a ``sparsity_report`` sparser than ``limit``; ``None``
    where there are none."""
    collapsed = {name: s for name, s in report["layers"].items() if s > limit}
    if not collapsed:
        return None
    listed = ", ".join(f"{name} ({s:.2%})" for name, s in collapsed.items())
    return (
        f"{who}: layers above {limit:.0%} sparsity: {listed}; they may carry almost no "
        f"signal ({remedy})"
    )
