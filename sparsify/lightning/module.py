"""Method-agnostic LightningModules. They know nothing of PILoT or Sign-In: methods are callbacks.

``ImageClassifier``, ``LanguageModel`` and ``Regressor`` share ``TrainingModule``: the optimizer,
the learning-rate schedule and named optimizer groups so callbacks can find the parameters:
``decay`` (conv/linear weights), ``no_decay`` (biases and norm parameters, weight decay 0),
``pointwise`` (the reparametrized m and w, when a callback has made them) and ``lora`` (the
adapter factors of ``sparsify.lora``, when there are any).
"""

from __future__ import annotations

import math
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    MultiStepLR,
    SequentialLR,
)
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.text import Perplexity

from sparsify.checkpoint import read_state_dict
from sparsify.errors import ConfigError, check_choice
from sparsify.lightning.metrics import SampleMean
from sparsify.lora import add_lora, lora_parameters
from sparsify.models import create_model
from sparsify.reparam import collapse, match_structure, pointwise_factors

OptimizerName = Literal["sgd", "adamw", "adam"]
SchedulerName = Literal["cosine", "step", "constant"]


def check_optimization(optimizer, scheduler, lr, weight_decay, warmup_epochs) -> None:
    """Fail early on optimizer settings ``TrainingModule`` cannot use."""
    check_choice("optimizer", optimizer, OptimizerName)
    check_choice("scheduler", scheduler, SchedulerName)
    if not lr > 0:
        raise ConfigError(f"lr={lr!r} is invalid: must be > 0")
    for name, value in (("weight_decay", weight_decay), ("warmup_epochs", warmup_epochs)):
        if value < 0:
            raise ConfigError(f"{name}={value!r} is invalid: must be >= 0")


class TrainingModule(L.LightningModule):
    """The optimizer, learning-rate schedule, named param groups and train/val/test steps of
    sparsify's modules; a subclass builds its model and writes ``step(batch, stage)``.

    A subclass takes its own arguments, restates only the optimization defaults it changes, and
    passes the rest on with ``**optimization`` (jsonargparse follows them, so the command line
    lists them all). The hyperparameters saved are the subclass's and these, by the same names.
    Loads checkpoints of sparsified models (masks, m ⊙ w) into a freshly built module.

    Args:
        optimizer: ``"sgd"`` (momentum, optional Nesterov), ``"adamw"`` (decoupled weight decay)
            or ``"adam"`` (coupled weight decay: added to the gradient; docs/integration.md).
        lr: peak learning rate.
        momentum: SGD's momentum.
        nesterov: SGD with Nesterov momentum.
        weight_decay: weight decay of the ``decay`` group (conv/linear weights).
        pointwise_weight_decay: weight decay of the ``pointwise`` group (m, w); defaults to
            ``weight_decay``.
        betas: Adam's and AdamW's moment decay rates.
        scheduler: ``"cosine"`` (to 0 over training), ``"step"`` (× ``gamma`` at each of
            ``milestones``, given as fractions of training) or ``"constant"``; all per step.
        warmup_epochs: linear warm-up over this many epochs (may be fractional), see
            ``lr_scheduler``.
    """

    def __init__(
        self,
        optimizer: OptimizerName = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 5e-4,
        pointwise_weight_decay: float | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: SchedulerName = "cosine",
        milestones: list[float] = (0.5, 0.75),
        gamma: float = 0.1,
        warmup_epochs: float = 0.0,
    ):
        super().__init__()
        check_optimization(optimizer, scheduler, lr, weight_decay, warmup_epochs)
        # Lightning collects the arguments of every __init__ up the subclass chain.
        self.save_hyperparameters()
        # The mean loss of each stage over the samples (each batch's loss counted once per
        # sample, as Lightning averages a logged tensor); not reduced over processes (each
        # rank logs its own). ModuleDict keys may not shadow Module attributes such as ``train``.
        self.mean_loss = torch.nn.ModuleDict(
            {
                f"{stage}_loss": SampleMean(sync_on_compute=False)
                for stage in ("train", "val", "test")
            }
        )

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets _current_fx_name around every hook it calls, some twenty times a
        # training step, and nn.Module.__setattr__ looks for a parameter, buffer or submodule
        # of that name each time.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        match_structure(self, checkpoint["state_dict"])

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        # A batch of tensors already there (the device loaders') is passed on as it is;
        # Lightning's default walks it through apply_to_collection at every step.
        if isinstance(batch, (tuple, list)) and all(
            isinstance(t, torch.Tensor) and t.device == device for t in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def step(self, batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
        """The loss of ``batch``, the ``batch_idx``-th of the epoch, logged under ``stage``
        (``train``, ``val`` or ``test``) through ``log_metrics``."""
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        return self.step(batch, "train", batch_idx)

    def validation_step(self, batch, batch_idx):
        self.step(batch, "val", batch_idx)

    def test_step(self, batch, batch_idx):
        self.step(batch, "test", batch_idx)

    def loss_metric(self, stage: str, loss: torch.Tensor, samples: int) -> tuple:
        """The ``log_metrics`` entry of ``stage``'s mean loss for a batch of ``samples``."""
        return self.mean_loss[f"{stage}_loss"], (loss.detach() * samples, samples), True

    def log_metrics(
        self, stage: str, batch_idx: int, metrics: dict[str, tuple[Metric, tuple, bool]]
    ) -> None:
        """Update every metric with this batch and log it as ``name`` under ``stage``;
        ``metrics`` maps names to ``(torchmetrics metric, update arguments, shown in the
        progress bar)``. Training logs a step value and the epoch's value, validation and test
        the epoch's value.

        The metric objects hold the epoch's values, so ``self.log`` (about 0.4 ms of Lightning's
        bookkeeping a call, as long as a whole LeNet-300-100 step) runs only where its result is
        read: at the first batch of an epoch (which registers the metrics) and, in training, at
        the steps the trainer writes to its loggers (``log_every_n_steps``). The loggers get the
        same step and epoch values as from a ``self.log`` at every step; between two writes, the
        progress bar and ``trainer.callback_metrics`` hold the last written step value
        (``log_every_n_steps=1`` updates them at every step).
        """
        on_step = stage == "train"
        log_now = batch_idx == 0 or (on_step and self._trainer_writes_logs())
        for name, (metric, args, prog_bar) in metrics.items():
            if log_now and on_step:
                metric(*args)  # forward: updates, and keeps the batch's own value for the step
            else:
                metric.update(*args)
            if log_now:
                self.log(name, metric, on_step=on_step, on_epoch=True, prog_bar=prog_bar)

    def _trainer_writes_logs(self) -> bool:
        """Whether Lightning writes the step metrics to its loggers after this training step."""
        trainer = self.trainer
        # Lightning's private flag; should a release drop it, every step is logged as before.
        connector = getattr(trainer, "_logger_connector", None)
        return bool(trainer.fast_dev_run) or getattr(connector, "should_update_logs", True)

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
            adam = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
            opt = adam(self.param_groups(), lr=hp.lr, betas=tuple(hp.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = total / max(1, self.trainer.max_epochs or 1)
        sched = lr_scheduler(
            opt, hp.scheduler, total, hp.warmup_epochs * steps_per_epoch, hp.milestones, hp.gamma
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class ImageClassifier(TrainingModule):
    """Cross-entropy classification of images with any registered backbone.

    Args:
        backbone: a name from ``sparsify.models.available()``.
        num_classes: number of classes.
        model_kwargs: extra keyword arguments of the backbone constructor.
        label_smoothing: of the cross-entropy.
        channels_last: keep the backbone's 4-d weights (m, w and masks too) and the input
            images in ``torch.channels_last`` memory format, which GPU convolutions run faster in
            under mixed precision; the numbers are the same.
        compile: run the backbone through ``torch.compile`` in training, validation and test
            steps: ``true``, or a mapping of ``torch.compile`` arguments (``mode``,
            ``backend``). Compiled when the fit starts, after the method's callbacks have set up
            their parametrizations; a later change of them (a mask registered at the end)
            recompiles. The weights and checkpoints stay those of the plain backbone.
        optimization: ``TrainingModule``'s arguments, with its defaults (SGD, lr 0.1,
            momentum 0.9, weight decay 5e-4, cosine).
    """

    def __init__(
        self,
        backbone: str = "cnn_digits",
        num_classes: int = 10,
        model_kwargs: dict | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: bool | dict = False,
        **optimization,
    ):
        super().__init__(**optimization)
        self.model = create_model(backbone, num_classes=num_classes, **(model_kwargs or {}))
        self._compiled = None  # torch.compile's wrapper of self.model, made in on_fit_start
        # ModuleDict keys may not shadow Module attributes such as ``train``.
        self.accuracy = torch.nn.ModuleDict()
        for stage in ("train", "val", "test"):
            self.accuracy[f"{stage}_top1"] = SampleMean()
            if num_classes >= 5 and stage != "train":
                self.accuracy[f"{stage}_top5"] = SampleMean()

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

    def step(self, batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        logits, n = logits.detach(), len(y)
        correct = (logits.argmax(dim=1) == y).sum()
        metrics = {
            f"{stage}/loss": self.loss_metric(stage, loss, n),
            f"{stage}/acc": (self.accuracy[f"{stage}_top1"], (correct, n), True),
        }
        if f"{stage}_top5" in self.accuracy:
            top5 = logits.topk(5, dim=1).indices.eq(y[:, None]).any(dim=1).sum()
            metrics[f"{stage}/acc_top5"] = (self.accuracy[f"{stage}_top5"], (top5, n), False)
        self.log_metrics(stage, batch_idx, metrics)
        return loss


def lr_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: SchedulerName,
    total: int,
    warmup: float = 0.0,
    milestones=(),
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-step learning-rate schedule, built from torch's schedulers: a linear warm-up of
    ``W = ⌈warmup⌉`` steps, factor ``(t + 1) / W`` at step ``t`` (``LinearLR``), then

    - ``cosine``: ``½ (1 + cos(π (t − W) / (total − W)))``, to 0 at step ``total``
      (``CosineAnnealingLR``);
    - ``step``: ``gamma`` to the number of ``milestones`` (fractions of ``total``) reached
      (``MultiStepLR``);
    - ``constant``: 1 (``ConstantLR`` of factor 1),

    chained by ``SequentialLR`` at step ``W``. A fractional ``warmup`` is rounded up to whole
    steps, so the warm-up ends at the peak.
    """
    warmup_steps = math.ceil(warmup)
    if kind == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=max(1, total - warmup_steps))
    elif kind == "step":
        # The milestones count from the end of the warm-up; one inside it applies at its end.
        steps = [max(0, math.ceil(m * total) - warmup_steps) for m in milestones]
        main = MultiStepLR(optimizer, steps, gamma)
    else:
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup_steps == 0:
        return main
    warm = LinearLR(optimizer, 1 / warmup_steps, 1.0, total_iters=max(1, warmup_steps - 1))
    return SequentialLR(optimizer, [warm, main], milestones=[warmup_steps])


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

        optimization: ``TrainingModule``'s arguments; the defaults are AdamW as in nanoGPT
            (lr 1e-3, weight decay 0.1, betas (0.9, 0.95)). Adapter factors form the param
            group ``lora``.
    """

    def __init__(
        self,
        backbone: str = "gpt",
        vocab_size: int = 256,
        model_kwargs: dict | None = None,
        lora: dict | None = None,
        init_from: str | None = None,
        ignore_index: int = -100,
        optimizer: OptimizerName = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        **optimization,
    ):
        super().__init__(
            optimizer=optimizer, lr=lr, weight_decay=weight_decay, betas=betas, **optimization
        )
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

    def step(self, batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
        inputs, targets = batch
        logits = self(inputs)
        loss = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=self.hparams.ignore_index
        )
        logits = logits.detach()
        metrics = {
            f"{stage}/loss": self.loss_metric(stage, loss, len(targets)),
            f"{stage}/ppl": (self.metrics[f"{stage}_ppl"], (logits.float(), targets), True),
            f"{stage}/acc": (
                self.metrics[f"{stage}_acc"],
                (logits.flatten(0, 1), targets.flatten()),
                False,
            ),
        }
        self.log_metrics(stage, batch_idx, metrics)
        return loss


def load_weights(model: torch.nn.Module, path: str) -> None:
    """Load a ``LanguageModel`` checkpoint or a backbone ``state_dict`` into ``model``, with the
    masks and m ⊙ w it was saved with, then multiply them out (``collapse``)."""
    state = read_state_dict(path, "init_from", submodule="model", trust_flag=None)
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
    ``optimization``: ``TrainingModule``'s arguments; the defaults are the plain gradient
    descent of the controlled study (docs/methods.md, "The controlled study": SGD, lr 0.02, no
    momentum, no weight decay, constant).
    """

    def __init__(
        self,
        backbone: str = "linear",
        num_outputs: int = 1,
        model_kwargs: dict | None = None,
        lr: float = 0.02,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        scheduler: SchedulerName = "constant",
        **optimization,
    ):
        super().__init__(
            lr=lr, momentum=momentum, weight_decay=weight_decay, scheduler=scheduler, **optimization
        )
        self.model = create_model(backbone, num_classes=num_outputs, **(model_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def step(self, batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
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
        self.log_metrics(stage, batch_idx, {f"{stage}/loss": self.loss_metric(stage, loss, len(y))})
        return loss
