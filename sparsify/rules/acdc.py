"""AC/DC: alternating compressed and dense phases, ending compressed (Peste et al. 2021)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from sparsify.dst import acdc_phase, restart_
from sparsify.errors import ConfigError, check_choice
from sparsify.masks import (
    LAYER_FLOOR,
    Scope,
    check_layer_floor,
    check_scope,
    check_sparsity,
    magnitude_prune,
    set_masks,
    sparsity_report,
)
from sparsify.reparam import add_masks, layer_masks, prunable_layers
from sparsify.rules.base import LayerRule, Run
from sparsify.rules.prune_at_end import collapsed_layers_warning

PhaseUnit = Literal["fraction", "epoch"]


class ACDC(LayerRule):
    """AC/DC, alternating compressed and dense phases that end compressed.

    Peste, Iofinova, Vladu, Alistarh, "AC/DC: Alternating Compressed/DeCompressed Training of
    Deep Neural Networks", NeurIPS 2021 (IST-DASLab/ACDC; docs/pai.md, "AC/DC and RiGL"): a
    dense warm-up of ``warmup`` epochs, then compressed and dense phases of ``length`` epochs in
    turn, a longer last dense phase of ``last_dense`` epochs and a final compressed phase of
    ``final`` epochs, so training ends at ``sparsity`` exactly.

    Each compressed phase starts by masking the smallest |θ| to ``sparsity`` (``scope``
    ``"global"`` or ``"layer"``); each dense phase removes the mask, and the weights it held
    restart from 0 (with cleared optimizer state). With ``reset_momentum`` (default) every
    momentum buffer of the optimizers (SGD's ``momentum_buffer``, Adam's first moment
    ``exp_avg``) is zeroed as well at each decompression, as the reference runs do
    (``--reset_momentum_after_recycling`` in IST-DASLab/ACDC). Phases change at epoch starts.

    With ``unit="fraction"`` (default) the lengths are fractions of ``max_epochs``, rounded to
    whole epochs (at least one epoch for ``length`` and ``final``); ``unit="epoch"`` takes them
    as epochs. The defaults are the reference's ResNet-50 ImageNet schedule of 100 epochs
    (IST-DASLab/ACDC, configs/neurips/iht_imagenet_resnet50_insta_cosinelr_s90_ep100.yaml):
    10 dense, compressed and dense phases of 5 from epoch 10 to 74, dense 75–84, compressed
    85–99. ``last_dense=None`` is twice ``length``, as there. The reference's CIFAR-10 ResNet-20
    schedule is ``warmup=0.05, length=0.1, final=0.15, last_dense=0.1`` (recipe
    ``method/acdc_cifar``, with that run's 200 epochs and learning-rate drops).

    The phase (0 dense, 1 compressed) is logged as ``acdc/phase``. The masks are model buffers
    and the current phase is in the ``state_dict``: a resumed run changes phase where an
    uninterrupted one would. Every rank prunes its own, identical, weights: no broadcast.
    Combine with ``SignIn`` for AC/DC + Sign-In.

    Args:
        sparsity: the sparsity of every compressed phase and of the end of training.
        warmup: the dense warm-up before the first compression, in ``unit``.
        length: the length of each compressed and each dense phase after the warm-up, in ``unit``.
        final: the last compressed phase, in ``unit``; training ends in it.
        last_dense: the dense phase before ``final``, in ``unit``; ``None``: twice ``length``.
        reset_momentum: zero every momentum buffer of the optimizers at each decompression.
        unit: ``"fraction"`` of ``max_epochs`` (rounded to whole epochs) or ``"epoch"``.
        scope: ``"global"`` (one magnitude threshold over all selected weights) or ``"layer"``
            (every layer compressed to ``sparsity``).
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
        layer_floor: under the global threshold every layer keeps at least
            ``layer_floor · (1 − sparsity)`` of its weights (the same default, 0.2, in every
            global pruner; ``sparsify.masks.LAYER_FLOOR``); 0: the plain global threshold.
    """

    state_fields = ("phase",)

    def __init__(
        self,
        sparsity: float = 0.9,
        warmup: float = 0.1,
        length: float = 0.05,
        final: float = 0.15,
        last_dense: float | None = None,
        reset_momentum: bool = True,
        unit: PhaseUnit = "fraction",
        scope: Scope = "global",
        include: list | None = None,
        exclude: list | None = None,
        layer_floor: float = LAYER_FLOOR,
    ):
        self.sparsity = check_sparsity(sparsity)
        self.layer_floor = check_layer_floor(layer_floor)
        check_choice("unit", unit, PhaseUnit)
        last_dense = 2 * length if last_dense is None else last_dense
        lengths = (("warmup", warmup), ("length", length), ("final", final))
        for name, value in (*lengths, ("last_dense", last_dense)):
            if not value >= 0 or (name in ("length", "final") and value == 0):
                raise ConfigError(
                    f"{name}={value!r} is invalid: must be > 0 (warmup, last_dense >= 0)"
                )
            if unit == "epoch" and value != int(value):
                raise ConfigError(f"{name}={value!r} is invalid with unit='epoch': whole epochs")
        self.warmup, self.length, self.final, self.unit = warmup, length, final, unit
        self.last_dense, self.reset_momentum = last_dense, bool(reset_momentum)
        self.scope = check_scope(scope)
        self.include, self.exclude = include, exclude
        self.phase = "dense"

    def epochs(self, max_epochs: int) -> tuple[int, int, int, int]:
        """(warm-up, phase length, final phase, last dense phase) in whole epochs: the last
        four arguments of ``sparsify.dst.acdc_phase``."""
        lengths = (self.warmup, self.length, self.final, self.last_dense)
        if self.unit == "epoch":
            return tuple(int(n) for n in lengths)
        warmup, length, final, last_dense = (round(f * max_epochs) for f in lengths)
        return warmup, max(1, length), max(1, final), last_dense

    def check_epochs(self, max_epochs: int | None) -> None:
        """Fail before training where the phases do not fit a run of ``max_epochs``."""
        if max_epochs is None or max_epochs < 1:
            raise ConfigError("ACDC needs trainer.max_epochs: its phases are counted in epochs")
        warmup, _, final, last_dense = self.epochs(max_epochs)
        if warmup + final + last_dense > max_epochs:
            raise ConfigError(
                f"warmup={self.warmup}, last_dense={self.last_dense}, final={self.final} is "
                f"invalid with max_epochs={max_epochs}: the warm-up, the last dense "
                "phase and the final phase do not fit"
            )

    def prepare(self, model: nn.Module) -> None:
        add_masks(model, self.layers(model))

    def start(self, run: Run) -> None:
        self.check_epochs(run.progress.total_epochs)

    def epoch_start(self, run: Run) -> dict[str, float]:
        epoch, total = run.progress.epoch, run.progress.total_epochs
        phase = acdc_phase(epoch, total, *self.epochs(total))
        if phase != self.phase:
            if phase == "compressed":
                self.compress(run.model)
            else:
                self.decompress(run.model, run.optimizers)
            self.phase = phase
            self.info(f"ACDC: epoch {epoch}, {phase} phase")
        return {"acdc/phase": float(phase == "compressed")}

    def compress(self, model: nn.Module) -> None:
        """Mask the smallest |θ| to ``sparsity``; warn of layers left almost empty."""
        magnitude_prune(
            model,
            self.sparsity,
            self.scope,
            self.layers(model),
            layer_floor=self.layer_floor,
        )
        report = sparsity_report(model, self.layers(model))
        remedy = "use scope='layer' or exclude them"
        if message := collapsed_layers_warning(report, "ACDC", remedy=remedy):
            self.warn(message)

    def decompress(self, model: nn.Module, optimizers: list) -> None:
        """Unmask every selected weight; the ones that were masked restart from 0."""
        live = layer_masks(model)
        selected = {n: live[n] for n, _ in prunable_layers(model, self.layers(model))}
        restart_(model, {name: m == 0 for name, m in selected.items()}, optimizers)
        set_masks(model, {name: torch.ones_like(m) for name, m in selected.items()})
        if self.reset_momentum:
            zero_momentum_(optimizers)


MOMENTUM_STATES = ("momentum_buffer", "exp_avg")


@torch.no_grad()
def zero_momentum_(optimizers) -> None:
    """Zero every momentum buffer (SGD's ``momentum_buffer``, Adam's ``exp_avg``) of every
    parameter of ``optimizers``; other state (Adam's second moment, step counts) is kept."""
    for optimizer in optimizers:
        for state in optimizer.state.values():
            for key in MOMENTUM_STATES:
                if isinstance(state.get(key), torch.Tensor):
                    state[key].zero_()
