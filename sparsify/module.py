"""Method-agnostic LightningModules. They know nothing of PILoT or Sign-In: methods are callbacks.

``ImageClassifier``, ``LanguageModel`` and ``Regressor`` share ``TrainingModule``: the optimizer,
the learning-rate schedule and named optimizer groups so callbacks can find the parameters:
``decay`` (conv/linear weights), ``no_decay`` (biases and norm parameters, weight decay 0),
``pointwise`` (the reparametrized m and w, when a callback has made them) and ``lora`` (the
adapter factors of ``sparsify.lora``, when there are any).
"""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.text import Perplexity

from sparsify.checkpoint import read_state_dict
from sparsify.errors import ConfigError
from sparsify.lora import add_lora, lora_parameters
from sparsify.models import create_model
from sparsify.reparam import collapse, match_structure, pointwise_factors

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "step", "constant")


def check_optimization(optimizer, scheduler, lr, weight_decay, warmup_epochs) -> None:
    """Fail early on optimizer settings ``TrainingModule`` cannot use."""
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer={optimizer!r} is invalid: choose one of {OPTIMIZERS}")
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"scheduler={scheduler!r} is invalid: choose one of {SCHEDULERS}")
    if not lr > 0:
        raise ConfigError(f"lr={lr!r} is invalid: must be > 0")
    for name, value in (("weight_decay", weight_decay), ("warmup_epochs", warmup_epochs)):
        if value < 0:
            raise ConfigError(f"{name}={value!r} is invalid: must be >= 0")


class TrainingModule(L.LightningModule):
    """The optimizer, learning-rate schedule and named param groups of sparsify's modules.

    Reads from ``self.hparams``: ``optimizer``, ``lr``, ``momentum``, ``nesterov``, ``betas``,
    ``weight_decay``, ``pointwise_weight_decay``, ``scheduler``, ``milestones``, ``gamma`` and
    ``warmup_epochs`` (see ``ImageClassifier`` for their meaning). Loads checkpoints of
    sparsified models (masks, m ⊙ w) into a freshly built module.
    """

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        match_structure(self, checkpoint["state_dict"])

    def param_groups(self) -> list[dict]:
        """``decay``, ``no_decay``, ``pointwise`` and ``lora`` groups (empty groups left out).

        ``no_decay`` holds the 1-d parameters and those a submodule lists in its
        ``no_weight_decay()`` (the timm convention: ViT's class token and position embedding).
        Frozen parameters (``requires_grad=False``) are in no group.
        """
        hp = self.hparams
        pointwise = {id(p) for _, m, w in pointwise_factors(self) for p in (m, w)}
        adapters = {id(p) for _, p in lora_parameters(self)}
        no_decay = set()
        for module in self.modules():
            if hasattr(module, "no_weight_decay"):
                no_decay |= {id(module.get_parameter(n)) for n in module.no_weight_decay()}
        groups = {"decay": [], "no_decay": [], "pointwise": [], "lora": []}
        for p in self.parameters():
            if not p.requires_grad:
                continue
            if id(p) in pointwise:
                groups["pointwise"].append(p)
            elif id(p) in adapters:
                groups["lora"].append(p)
            elif p.ndim <= 1 or id(p) in no_decay:
                groups["no_decay"].append(p)
            else:
                groups["decay"].append(p)
        decay = {"decay": hp.weight_decay, "no_decay": 0.0, "pointwise": hp.weight_decay}
        decay["lora"] = hp.weight_decay  # the adapters' own weight decay
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


class ImageClassifier(TrainingModule):
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
        channels_last: keep the backbone's 4-d weights (m, w and masks too) and the input
            images in ``torch.channels_last`` memory format, which GPU convolutions run faster in
            under mixed precision; the numbers are the same.
        compile: run the backbone through ``torch.compile`` in training, validation and test
            steps: ``true``, or a mapping of ``torch.compile`` arguments (``mode``,
            ``backend``). Compiled when the fit starts, after the method's callbacks have set up
            their parametrizations; a later change of them (a mask registered at the end)
            recompiles. The weights and checkpoints stay those of the plain backbone.
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
        channels_last: bool = False,
        compile: bool | dict = False,
    ):
        super().__init__()
        check_optimization(optimizer, scheduler, lr, weight_decay, warmup_epochs)
        self.save_hyperparameters()
        self.model = create_model(backbone, num_classes=num_classes, **(model_kwargs or {}))
        self._compiled = None  # torch.compile's wrapper of self.model, made in on_fit_start
        # ModuleDict keys may not shadow Module attributes such as ``train``.
        self.accuracy = torch.nn.ModuleDict()
        for stage in ("train", "val", "test"):
            self.accuracy[f"{stage}_top1"] = MulticlassAccuracy(num_classes, average="micro")
            if num_classes >= 5 and stage != "train":
                self.accuracy[f"{stage}_top5"] = MulticlassAccuracy(
                    num_classes, top_k=5, average="micro"
                )

    def on_fit_start(self) -> None:
        if self.hparams.compile:
            # Kept out of the module's children, so state_dict keys stay those of the backbone.
            options = self.hparams.compile if isinstance(self.hparams.compile, dict) else {}
            self.__dict__["_compiled"] = torch.compile(self.model, **options)

    def on_train_start(self) -> None:
        # After the callbacks' own on_train_start: m ⊙ w and the masks exist (and change format
        # too), and a random mask drawn at the start is drawn in the usual layout.
        if self.hparams.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self._compiled or self.model)(x)

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


class LanguageModel(TrainingModule):
    """Causal language modelling with any registered transformer (``gpt``,
    ``single_layer_attention``), the way ``ImageClassifier`` wraps a CNN.

    Batches are ``(inputs, targets)``, two ``(B, T)`` LongTensors, the targets being the inputs
    shifted by one token. The loss is the mean next-token cross-entropy; logged: ``*/loss``,
    ``*/ppl`` (perplexity, torchmetrics) and ``*/acc`` (next-token accuracy).

    Args:
        backbone: a name from ``sparsify.models.available()``.
        vocab_size: number of tokens (the backbone's ``num_classes``); 256 for bytes.
        model_kwargs: extra keyword arguments of the backbone (``context_length``, ``width``,
            ``depth``, ``heads``, ...).
        lora: keyword arguments of ``sparsify.lora.add_lora`` (``rank``, ``alpha``,
            ``include``, ``exclude``): adapters on the backbone, base frozen; ``None``: no LoRA.
        init_from: weights to start from, loaded before LoRA is added: a checkpoint of a
            ``LanguageModel`` or a ``state_dict`` of the backbone. Masks and m ⊙ w saved in
            it are restored and multiplied out into plain weights. The file is only read when
            the module is built; pass ``init_from=None`` to ``load_from_checkpoint`` elsewhere.
        ignore_index: target value left out of the loss and the metrics (padding).

    The optimizer arguments are those of ``ImageClassifier``; the defaults are AdamW as in
    nanoGPT. Adapter factors form the param group ``lora``.
    """

    def __init__(
        self,
        backbone: str = "gpt",
        vocab_size: int = 256,
        model_kwargs: dict | None = None,
        lora: dict | None = None,
        init_from: str | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.1,
        pointwise_weight_decay: float | None = None,
        betas: tuple[float, float] = (0.9, 0.95),
        scheduler: str = "cosine",
        milestones: list[float] = (0.5, 0.75),
        gamma: float = 0.1,
        warmup_epochs: float = 0.0,
        ignore_index: int = -100,
    ):
        super().__init__()
        check_optimization(optimizer, scheduler, lr, weight_decay, warmup_epochs)
        self.save_hyperparameters()
        self.model = create_model(backbone, num_classes=vocab_size, **(model_kwargs or {}))
        if init_from is not None:
            load_weights(self.model, init_from)
        if lora is not None:
            add_lora(self.model, **lora)
        # ModuleDict keys may not shadow Module attributes such as ``train``.
        self.metrics = torch.nn.ModuleDict()
        for stage in ("train", "val", "test"):
            self.metrics[f"{stage}_ppl"] = Perplexity(ignore_index=ignore_index)
            self.metrics[f"{stage}_acc"] = MulticlassAccuracy(
                vocab_size, average="micro", ignore_index=ignore_index
            )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def _step(self, batch, stage: str) -> torch.Tensor:
        inputs, targets = batch
        logits = self(inputs)
        loss = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=self.hparams.ignore_index
        )
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True)
        perplexity, accuracy = self.metrics[f"{stage}_ppl"], self.metrics[f"{stage}_acc"]
        perplexity(logits.float(), targets)
        self.log(f"{stage}/ppl", perplexity, on_epoch=True, prog_bar=True)
        accuracy(logits.flatten(0, 1), targets.flatten())
        self.log(f"{stage}/acc", accuracy, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")


def load_weights(model: torch.nn.Module, path: str) -> None:
    """Load a ``LanguageModel`` checkpoint or a backbone ``state_dict`` into ``model``, with the
    masks and m ⊙ w it was saved with, then multiply them out (``collapse``)."""
    state = read_state_dict(path, "init_from", submodule="model")
    match_structure(model, state)
    own = model.state_dict()
    problems = {
        "missing": sorted(set(own) - set(state)),
        "unexpected": sorted(set(state) - set(own)),
        "wrong shape": [k for k in own if k in state and own[k].shape != state[k].shape],
    }
    if any(problems.values()):
        found = "; ".join(f"{kind} {keys[:3]}" for kind, keys in problems.items() if keys)
        raise ConfigError(f"init_from={path!r} is invalid: it does not fit the model ({found})")
    model.load_state_dict(state)
    collapse(model)


class Regressor(TrainingModule):
    """Mean squared error on float ``(x, y)`` batches with any registered model: the controlled
    studies (sparse regression and sparse coding with ``linear``, matrix sensing with
    ``matrix_factorization``) through the same Lightning path as the networks.

    The prediction is reshaped to the target's shape when both hold as many values (a
    ``linear`` model's ``(B, 1)`` against targets ``(B,)``). Logs ``*/loss`` (the MSE).
    The optimizer arguments are those of ``ImageClassifier``; the defaults are the plain gradient
    descent of the controlled study in METHODS.md §2 (SGD, lr 0.02, no momentum, constant).
    """

    def __init__(
        self,
        backbone: str = "linear",
        num_outputs: int = 1,
        model_kwargs: dict | None = None,
        optimizer: str = "sgd",
        lr: float = 0.02,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        pointwise_weight_decay: float | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: str = "constant",
        milestones: list[float] = (0.5, 0.75),
        gamma: float = 0.1,
        warmup_epochs: float = 0.0,
    ):
        super().__init__()
        check_optimization(optimizer, scheduler, lr, weight_decay, warmup_epochs)
        self.save_hyperparameters()
        self.model = create_model(backbone, num_classes=num_outputs, **(model_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        prediction = self(x)
        if prediction.shape != y.shape:
            if prediction.numel() != y.numel():
                raise ConfigError(
                    f"num_outputs={self.hparams.num_outputs} is invalid: the model predicts "
                    f"{tuple(prediction.shape)} for targets of shape {tuple(y.shape)}"
                )
            prediction = prediction.reshape(y.shape)
        loss = F.mse_loss(prediction, y)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")
