"""One-shot magnitude pruning at the end of training, optionally followed by fine-tuning."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from sparsify.callbacks.ddp import rewrap_ddp
from sparsify.dst import restart_
from sparsify.errors import ConfigError
from sparsify.masks import check_scope, check_sparsity, magnitude_prune
from sparsify.reparam import add_masks, prunable_layers
from sparsify.soft_masks import harden

REGROW = ("random",)


class PruneAtEnd(L.Callback):
    """Mask the smallest effective weights |θ| to reach ``sparsity`` (``scope`` ``"global"``: one
    threshold over all prunable weights, ``"layer"``: the same sparsity in every layer).

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
    """

    def __init__(
        self,
        sparsity: float,
        scope: str = "global",
        finetune_epochs: int = 0,
        include: list | None = None,
        exclude: list | None = None,
        monitor: str = "val/acc",
        regrow: str | None = None,
        regrow_seed: int = 0,
    ):
        self.sparsity = check_sparsity(sparsity)
        if regrow is not None and regrow not in REGROW:
            raise ConfigError(
                f"regrow={regrow!r} is invalid: choose one of {', '.join(REGROW)}, or null to "
                "keep a learned mask that is sparser than the target"
            )
        self.regrow, self.regrow_seed = regrow, int(regrow_seed)
        self.scope = check_scope(scope)
        if finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs={finetune_epochs!r} is invalid: must be >= 0")
        self.finetune_epochs = int(finetune_epochs)
        self.include, self.exclude, self.monitor = include, exclude, monitor
        self.pruned = False
        self.before: float | None = None
        self.after: float | None = None
        self.unpruned_state_dict: dict | None = None
        self.achieved: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.check_trainer(trainer)
        add_masks(pl_module, self.include, self.exclude)

    def check_trainer(self, trainer: L.Trainer) -> None:
        """Fail before anything is written if fine-tuning would take the whole run."""
        max_epochs = trainer.max_epochs
        if self.finetune_epochs and (max_epochs is None or max_epochs <= self.finetune_epochs):
            raise ConfigError(
                f"finetune_epochs={self.finetune_epochs} leaves no training before pruning with "
                f"max_epochs={max_epochs}: it must be smaller than max_epochs"
            )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        start = trainer.max_epochs - self.finetune_epochs
        if self.finetune_epochs and trainer.current_epoch >= start:
            self.prune(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.pruned:
            self.prune(trainer, pl_module)
        elif self.finetune_epochs:
            self.after = self._metric(trainer)
        rank_zero_info(
            f"PruneAtEnd: {self.monitor} {self.before} before pruning to sparsity "
            f"{self.achieved} (target {self.sparsity:.4g}), {self.after} after"
            + (f" {self.finetune_epochs} epoch(s) of fine-tuning" if self.finetune_epochs else "")
        )

    def prune(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.pruned:
            return
        self.before = self._metric(trainer)
        # A learned soft mask (STR, CS) becomes a plain mask first, so that fine-tuning keeps
        # exactly the sparsity asked for and the saved weights load into the pruned model.
        if harden(pl_module):
            rewrap_ddp(trainer)
        state = pl_module.state_dict()
        self.unpruned_state_dict = {k: v.detach().cpu().clone() for k, v in state.items()}
        zeros = {
            name: layer.weight.detach() == 0
            for name, layer in prunable_layers(pl_module, self.include, self.exclude)
        }
        new = magnitude_prune(
            pl_module,
            self.sparsity,
            self.scope,
            self.include,
            self.exclude,
            self.regrow_scores(zeros),
        )
        grown = {name: zeros[name] & (mask != 0) for name, mask in new.items()}
        restart_(pl_module, grown, trainer.optimizers)
        self.pruned = True
        # Counted on the mask: a regrown weight is in it, though still 0.
        total = sum(z.numel() for z in zeros.values())
        self.achieved = 1 - sum(int((mask != 0).sum()) for mask in new.values()) / total
        if self.achieved > self.sparsity + len(zeros) / total:  # more than rounding
            rank_zero_info(
                f"PruneAtEnd: only {1 - self.achieved:.4%} of the weights are non-zero, fewer than "
                f"the target sparsity {self.sparsity:.4g} keeps: the learned mask is kept, "
                f"achieved sparsity {self.achieved:.4f} (no exact zero is revived; "
                "regrow='random' fills the target)"
            )
        for logger in trainer.loggers:
            logger.log_metrics({"prune/sparsity": self.achieved}, step=trainer.global_step)

    def regrow_scores(self, zeros: dict) -> dict | None:
        """Uniform random scores for the ``random`` rule, from a generator of its own, so every
        rank draws the same ones and the run's random state is untouched."""
        if self.regrow is None:
            return None
        generator = torch.Generator().manual_seed(self.regrow_seed)
        return {
            name: torch.rand(z.shape, generator=generator).to(z.device) for name, z in zeros.items()
        }

    def _metric(self, trainer: L.Trainer) -> float | None:
        value = trainer.callback_metrics.get(self.monitor)
        return float(value) if isinstance(value, torch.Tensor) else value

    def state_dict(self) -> dict:
        return {"pruned": self.pruned, "before": self.before, "achieved": self.achieved}

    def load_state_dict(self, state_dict: dict) -> None:
        self.pruned = state_dict["pruned"]
        self.before = state_dict["before"]
        self.achieved = state_dict.get("achieved")
