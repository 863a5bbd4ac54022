"""One-shot magnitude pruning at the end of training, optionally followed by fine-tuning: the
Lightning adapter of ``sparsify.rules.prune_at_end``, with the Lightning glue (the monitored
metric, DDP after hardening, the ranking of ``ModelCheckpoint`` s and ``pruned.ckpt``)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from sparsify import rules
from sparsify.callbacks.ddp import rewrap_ddp
from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.rule_callback import RuleCallback, lightning_run
from sparsify.callbacks.state_key import argument_key


class PruneAtEnd(rules.PruneAtEnd, RuleCallback, PortableCheckpoint):
    __doc__ = rules.PruneAtEnd.__doc__

    _monitor_checked = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.check_trainer(trainer)
        # Also outside fit: a checkpoint of a pruned run loads into the masked model.
        self.prepare(pl_module)

    def check_trainer(self, trainer: L.Trainer) -> None:
        """Fail before anything is written if fine-tuning would take the whole run."""
        hint = "on the command line --trainer.callbacks.finetune_epochs=N; "
        self.check_epochs(trainer.max_epochs, "max_epochs", hint)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Say at the first validation, not at the end of training, that ``monitor`` is missing."""
        if trainer.sanity_checking or self._monitor_checked:
            return
        self._monitor_checked = True
        if self.monitor not in trainer.callback_metrics:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "none"
            rank_zero_warn(
                f"PruneAtEnd: monitor={self.monitor!r} is not logged (logged: {logged}); the "
                "accuracy before and after pruning will not be reported"
            )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run = lightning_run(trainer, pl_module, metrics=trainer.callback_metrics)
        self.after_pruning(trainer, self.epoch_start(run))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run = lightning_run(trainer, pl_module, metrics=trainer.callback_metrics)
        self.after_pruning(trainer, self.end(run))
        self.save_pruned(trainer)

    def after_pruning(self, trainer: L.Trainer, logs: dict | None) -> None:
        """Where the rule has just pruned (``logs``): DDP, the checkpoints' ranking, the log."""
        if logs is None:
            return
        if self.hardened:
            rewrap_ddp(trainer)
        self.restart_ranking(trainer)
        for logger in trainer.loggers:
            logger.log_metrics(logs, step=trainer.global_step)

    def save_pruned(self, trainer: L.Trainer) -> None:
        """Save the pruned model beside the ranked checkpoints; make it the best where no
        checkpoint of the pruned model was ranked."""
        ranked = [c for c in trainer.checkpoint_callbacks if c.monitor and c.dirpath]
        if not ranked:
            return
        path = str(Path(ranked[0].dirpath) / "pruned.ckpt")
        trainer.save_checkpoint(path)
        for callback in ranked:
            if not callback.best_model_path:
                callback.best_model_path = path
        rank_zero_info(f"PruneAtEnd: saved the pruned model to {path}")

    def restart_ranking(self, trainer: L.Trainer) -> None:
        """Only checkpoints written after pruning compete for best from now on."""
        for callback in trainer.checkpoint_callbacks:
            if not callback.monitor:
                continue
            dropped = sorted(callback.best_k_models)
            callback.best_k_models = {}
            callback.kth_best_model_path = callback.best_model_path = ""
            callback.best_model_score = None
            callback.kth_value = torch.tensor(float("inf" if callback.mode == "min" else "-inf"))
            rank_zero_info(
                f"PruneAtEnd: ModelCheckpoint(monitor={callback.monitor!r}) now ranks only "
                f"checkpoints of the pruned model; unranked dense checkpoints: {dropped or 'none'}"
            )

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return argument_key(self, "sparsity", "scope", "include", "exclude", "pattern")
