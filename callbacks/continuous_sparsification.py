"""Continuous sparsification (CS): a sigmoid soft mask with a growing temperature.

Savarese, Silva & Maire, "Winning the Lottery with Continuous Sparsification" (NeurIPS 2020):
every weight is used as θ = w ⊙ σ(τ s) / σ(τ₀ s₀) with a learned score s per weight. The loss
gets an L1 penalty λ ‖σ(τ s)‖₁ on the soft mask, and the temperature τ grows geometrically
from τ₀ at the first epoch to τ_final at the last, so σ(τ s) approaches the step 1[s > 0].
When training ends the mask is binarized: θ = w / σ(τ₀ s₀) ⊙ 1[s > 0].
"""

from __future__ import annotations

import lightning as L
import torch

from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.errors import ConfigError
from sparsify.soft_masks import SigmoidMask, harden, sigmoid_mask, soft_masks


class ContinuousSparsification(PortableCheckpoint):
    """Install CS's ``SigmoidMask`` on every selected weight in ``setup`` (before the optimizers
    are built, so they see the scores s), raise the temperature every epoch, add the L1
    penalty's gradient to s, and ``harden`` the mask to 1[s > 0] when training ends.

    Args:
        penalty: λ of the L1 penalty λ · Σ σ(τ s) over all masked weights; its gradient
            λ τ σ'(τ s) is added to the scores' gradient before every optimizer step.
        s_init: initial score s₀ of every weight (slightly negative: a weight survives only if
            the loss pushes its score above 0).
        temperature_init, temperature_final: τ at the first and at the last epoch; in between
            τ_e = τ₀ · (τ_final / τ₀)^(e / (max_epochs − 1)).
        include, exclude: layer selection, as in ``sparsify.reparam.prunable_layers``.
        harden_at_end: binarize the mask when training ends.

    The scores and the temperature are in the model's ``state_dict``; the temperature is a
    function of the epoch, so a resumed run continues the schedule. Logs ``cs/temperature`` and
    ``cs/density`` (the fraction of scores > 0, the density binarizing would give) every epoch.
    """

    def __init__(
        self,
        penalty: float = 1e-8,
        s_init: float = -0.01,
        temperature_init: float = 1.0,
        temperature_final: float = 200.0,
        include: list | None = None,
        exclude: list | None = None,
        harden_at_end: bool = True,
    ):
        if penalty < 0:
            raise ConfigError(f"penalty={penalty!r} is invalid: must be >= 0")
        if not 0 < temperature_init <= temperature_final:
            raise ConfigError(
                f"temperature_init={temperature_init!r}, temperature_final={temperature_final!r}"
                " is invalid: need 0 < temperature_init <= temperature_final"
            )
        self.penalty = float(penalty)
        self.s_init = float(s_init)
        self.temperature_init = float(temperature_init)
        self.temperature_final = float(temperature_final)
        self.include, self.exclude = include, exclude
        self.harden_at_end = harden_at_end

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.check_trainer(trainer)
            sigmoid_mask(pl_module, self.s_init, self.temperature_init, self.include, self.exclude)

    def check_trainer(self, trainer: L.Trainer) -> None:
        if trainer.max_epochs is None or trainer.max_epochs < 1:
            raise ConfigError(
                f"max_epochs={trainer.max_epochs} is invalid for ContinuousSparsification: the "
                "temperature schedule needs a fixed number of epochs"
            )

    def temperature(self, epoch: int, max_epochs: int) -> float:
        """τ₀ · (τ_final / τ₀)^(epoch / (max_epochs − 1)), τ_final from the last epoch on."""
        progress = min(1.0, epoch / max(1, max_epochs - 1))
        return self.temperature_init * (self.temperature_final / self.temperature_init) ** progress

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tau = self.temperature(trainer.current_epoch, trainer.max_epochs)
        for _, soft in soft_masks(pl_module, SigmoidMask):
            soft.temperature.fill_(tau)

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.penalty:
            return
        for _, soft in soft_masks(pl_module, SigmoidMask):
            if soft.scores.grad is not None:
                sigma = soft.soft_mask()
                soft.scores.grad.add_(soft.temperature * sigma * (1 - sigma), alpha=self.penalty)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        masks = [soft for _, soft in soft_masks(pl_module, SigmoidMask)]
        if masks:
            alive = sum(int(((s.scores > 0) * s.mask).sum()) for s in masks)
            total = sum(s.scores.numel() for s in masks)
            pl_module.log("cs/temperature", float(masks[0].temperature), sync_dist=True)
            pl_module.log("cs/density", alive / total, sync_dist=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.harden_at_end:
            harden(pl_module)
