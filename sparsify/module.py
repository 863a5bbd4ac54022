"""Method-agnostic LightningModules. They know nothing of PILoT or Sign-In: methods are callbacks.

``ImageClassifier`` puts its parameters in three named optimizer groups so callbacks can find
them: ``decay`` (conv/linear weights), ``no_decay`` (biases and norm parameters, weight decay 0)
and ``pointwise`` (the reparametrized m and w, when a callback has made them).
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from sparsify.errors import ConfigError
from sparsify.models import create_model
from sparsify.reparam import match_structure, pointwise_factors

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "step", "constant")


class ImageClassifier(L.LightningModule):
    """Cross-entropy classification of images with any registered backbone.

    Args:
        backbone: a name from ``sparsify.models.available()``.
        num_classes: number of classes.
        model_kwargs: extra keyword arguments of the backbone constructor.
        optimizer: ``"sgd"`` (momentum, optional Nesterov) or ``"adamw"``.
        lr: peak learning rate.
        weight_decay: weight decay of the ``decay`` group (conv/linear weights).
        pointwise_weight_decay: weight decay of the ``pointwise`` group (m, w); defaults to
            ``weight_decay``.
        scheduler: ``"cosine"`` (to 0 over training), ``"step"`` (× ``gamma`` at each of
            ``milestones``, given as fractions of training) or ``"constant"``; all per step.
        warmup_epochs: linear warm-up from 0 over this many epochs (may be fractional).
    """

    def __init__(
        self,
        backbone: str = "cnn_digits",
        num_classes: int = 10,
        model_kwargs: dict | None = None,
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 5e-4,
        pointwise_weight_decay: float | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: str = "cosine",
        milestones: list[float] = (0.5, 0.75),
        gamma: float = 0.1,
        warmup_epochs: float = 0.0,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer={optimizer!r} is invalid: choose one of {OPTIMIZERS}")
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler={scheduler!r} is invalid: choose one of {SCHEDULERS}")
        if not lr > 0:
            raise ConfigError(f"lr={lr!r} is invalid: must be > 0")
        for name, value in (("weight_decay", weight_decay), ("warmup_epochs", warmup_epochs)):
            if value < 0:
                raise ConfigError(f"{name}={value!r} is invalid: must be >= 0")
        self.save_hyperparameters()
        self.model = create_model(backbone, num_classes=num_classes, **(model_kwargs or {}))
        # ModuleDict keys may not shadow Module attributes such as ``train``.
        self.accuracy = torch.nn.ModuleDict()
        for stage in ("train", "val", "test"):
            self.accuracy[f"{stage}_top1"] = MulticlassAccuracy(num_classes, average="micro")
            if num_classes >= 5 and stage != "train":
                self.accuracy[f"{stage}_top5"] = MulticlassAccuracy(
                    num_classes, top_k=5, average="micro"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True)
        for key, name in (
            (f"{stage}_top1", f"{stage}/acc"),
            (f"{stage}_top5", f"{stage}/acc_top5"),
        ):
            if key in self.accuracy:
                self.accuracy[key](logits, y)
                self.log(name, self.accuracy[key], on_epoch=True, prog_bar=name.endswith("acc"))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        match_structure(self, checkpoint["state_dict"])

    def param_groups(self) -> list[dict]:
        """``decay``, ``no_decay`` and ``pointwise`` groups (empty groups left out)."""
        hp = self.hparams
        pointwise = {id(p) for _, m, w in pointwise_factors(self) for p in (m, w)}
        groups = {"decay": [], "no_decay": [], "pointwise": []}
        for p in self.parameters():
            if not p.requires_grad:
                continue
            if id(p) in pointwise:
                groups["pointwise"].append(p)
            elif p.ndim <= 1:
                groups["no_decay"].append(p)
            else:
                groups["decay"].append(p)
        decay = {"decay": hp.weight_decay, "no_decay": 0.0, "pointwise": hp.weight_decay}
        if hp.pointwise_weight_decay is not None:
            decay["pointwise"] = hp.pointwise_weight_decay
        return [
            {"name": name, "params": params, "weight_decay": decay[name]}
            for name, params in groups.items()
            if params
        ]

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(
                self.param_groups(), lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov
            )
        else:
            opt = torch.optim.AdamW(self.param_groups(), lr=hp.lr, betas=tuple(hp.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = total / max(1, self.trainer.max_epochs or 1)
        schedule = lr_factor(
            hp.scheduler, total, hp.warmup_epochs * steps_per_epoch, hp.milestones, hp.gamma
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def lr_factor(kind: str, total: int, warmup: float, milestones=(), gamma: float = 0.1):
    """The learning-rate multiplier as a function of the step: linear warm-up over ``warmup``
    steps, then cosine to 0, steps of ``gamma`` at ``milestones`` (fractions), or constant."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            progress = (step - warmup) / max(1.0, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if kind == "step":
            return gamma ** sum(step >= m * total for m in milestones)
        return 1.0

    return factor
