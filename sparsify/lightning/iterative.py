"""Iterative magnitude pruning over several rounds of ordinary training: IMP and LRR.

Each round is one ``Trainer.fit`` with a fresh trainer, so the optimizer and the learning-rate
schedule start again. After every round the smallest effective weights |θ| that are still
alive are masked, a fraction ``p = 1 − (1 − s)^(1/rounds)`` of them, so that after round r
(1 ≤ r ≤ rounds) the density is ``(1 − s)^(r/rounds)`` and the last training round runs at the
target sparsity s. Then

- ``rewind="weights"``, IMP with weight rewinding (Frankle et al., "Linear Mode Connectivity and
  the Lottery Ticket Hypothesis", 2020): the weights (and buffers) go back to their values at
  the start of epoch ``rewind_epoch`` of the first round (0: the initialization, the original
  lottery ticket), under the new mask;
- ``rewind="lr"``, learning-rate rewinding (Renda et al., "Comparing Rewinding and Fine-tuning in
  Neural Network Pruning", 2020): the trained weights are kept, only the learning-rate schedule
  starts again with the next fit.

Masks are model buffers (``Mask`` or ``PointwiseProduct``), so they carry from round to round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import lightning as L
import torch

from sparsify.errors import ConfigError, check_choice
from sparsify.masks import (
    LAYER_FLOOR,
    Scope,
    check_layer_floor,
    check_scope,
    check_sparsity,
    magnitude_prune,
    sparsity_report,
)
from sparsify.reparam import add_masks

Rewind = Literal["weights", "lr"]


def round_sparsities(sparsity: float, rounds: int) -> list[float]:
    """Sparsity after each pruning step: 1 − (1 − s)^(r / rounds) for r = 1 … rounds."""
    return [1 - (1 - sparsity) ** (r / rounds) for r in range(1, rounds + 1)]


class SaveWeightsAtEpoch(L.Callback):
    """Keeps a copy of the module's ``state_dict`` (on the CPU) at the start of ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch
        self.state: dict[str, torch.Tensor] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and self.state is None:
            state = pl_module.state_dict()
            self.state = {k: v.detach().cpu().clone() for k, v in state.items()}


@torch.no_grad()
def rewind_(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy every saved tensor except the masks back into ``module``: θ = saved w ⊙ mask."""
    live = module.state_dict()
    for key, value in state.items():
        if not key.endswith(".mask"):
            live[key].copy_(value)


def iterative_pruning(
    module: L.LightningModule,
    make_trainer: Callable[[list[L.Callback]], L.Trainer],
    sparsity: float,
    rounds: int = 3,
    rewind: Rewind = "weights",
    rewind_epoch: int = 1,
    scope: Scope = "global",
    include: Iterable | None = None,
    exclude: Iterable | None = None,
    layer_floor: float = LAYER_FLOOR,
    after_round: Callable[[int, L.Trainer, L.LightningModule], None] | None = None,
    **fit_kwargs,
) -> list[dict]:
    """Train ``rounds + 1`` times, pruning to the geometric schedule in between (see above).

    Args:
        module: any LightningModule; it is trained in place and ends at ``sparsity``.
        make_trainer: builds a fresh ``Trainer`` for a round, given callbacks it must add to
            its own (the driver passes the one that saves the rewind point).
        sparsity: the final sparsity s, in [0, 1).
        rounds: pruning steps (trainings: ``rounds + 1``, the first one dense).
        rewind: ``"weights"`` (IMP) or ``"lr"`` (LRR).
        rewind_epoch: for IMP, the epoch of the first round whose starting weights are restored.
        scope, include, exclude, layer_floor: as in ``sparsify.masks.magnitude_prune`` (the
            floor: every layer keeps at least ``layer_floor · (1 − s)`` of its weights).
        after_round: called as ``after_round(r, trainer, module)`` after every fit, e.g. to test.
        fit_kwargs: passed to every ``trainer.fit`` (``datamodule=...`` or dataloaders).

    Returns one record per training round: ``{"round", "sparsity", "metrics"}``, the sparsity
    being the measured one during that round and ``metrics`` the trainer's final
    ``callback_metrics`` as floats.
    """
    check_sparsity(sparsity)
    check_scope(scope)
    check_layer_floor(layer_floor)
    if not (isinstance(rounds, int) and rounds >= 1):
        raise ConfigError(f"rounds={rounds!r} is invalid: must be an integer >= 1")
    check_choice("rewind", rewind, Rewind)
    if not (isinstance(rewind_epoch, int) and rewind_epoch >= 0):
        raise ConfigError(f"rewind_epoch={rewind_epoch!r} is invalid: must be an integer >= 0")
    add_masks(module, include, exclude)
    saver = SaveWeightsAtEpoch(rewind_epoch)
    targets = [0.0] + round_sparsities(sparsity, rounds)
    records = []
    for r, target in enumerate(targets):
        if r > 0:
            magnitude_prune(module, target, scope, include, exclude, layer_floor=layer_floor)
            if rewind == "weights":
                rewind_(module, saver.state)
        trainer = make_trainer([saver] if r == 0 and rewind == "weights" else [])
        if r == 0 and rewind == "weights":
            _check_rewind_epoch(trainer, rewind_epoch)
        trainer.fit(module, **fit_kwargs)
        if r == 0 and rewind == "weights" and saver.state is None:
            raise ConfigError(
                f"rewind_epoch={rewind_epoch} was never reached: the first round ended after "
                f"{trainer.current_epoch} epoch(s)"
            )
        report = sparsity_report(module, include, exclude)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        records.append({"round": r, "sparsity": report["global"], "metrics": metrics})
        if after_round is not None:
            after_round(r, trainer, module)
    return records


def _check_rewind_epoch(trainer: L.Trainer, rewind_epoch: int) -> None:
    if trainer.max_epochs is not None and trainer.max_epochs > 0:
        if rewind_epoch >= trainer.max_epochs:
            raise ConfigError(
                f"rewind_epoch={rewind_epoch} is invalid with max_epochs={trainer.max_epochs}: "
                "the rewind point must be an epoch of the first round"
            )
