"""The LightningModules' shared optimization: hyperparameter names, optimizer choices and the
learning-rate schedule (torch's schedulers, per step as the hand-written factor was), and the
metrics they log."""

import csv
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from helpers import trainer
from sparsify.callbacks import WeightDecaySchedule
from sparsify.errors import ConfigError
from sparsify.lightning.module import ImageClassifier, LanguageModel, Regressor, lr_scheduler

OPTIMIZATION = [
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "pointwise_weight_decay",
    "betas",
    "scheduler",
    "milestones",
    "gamma",
    "warmup_epochs",
]
# The hyperparameters each module saved before the optimization arguments were shared.
SAVED_BEFORE = {
    ImageClassifier: ["backbone", "num_classes", "model_kwargs", *OPTIMIZATION]
    + ["label_smoothing", "channels_last", "compile"],
    LanguageModel: ["backbone", "vocab_size", "model_kwargs", "lora", "init_from", *OPTIMIZATION]
    + ["ignore_index"],
    Regressor: ["backbone", "num_outputs", "model_kwargs", *OPTIMIZATION],
}
TINY = {
    ImageClassifier: {},
    LanguageModel: {"model_kwargs": {"context_length": 8, "width": 16, "depth": 1, "heads": 2}},
    Regressor: {"model_kwargs": {"in_features": 3}},
}


@pytest.mark.parametrize("cls", list(SAVED_BEFORE), ids=lambda cls: cls.__name__)
def test_hyperparameter_names_stay_and_old_checkpoints_load(cls, tmp_path):
    module = cls(**TINY[cls])
    assert sorted(module.hparams) == sorted(SAVED_BEFORE[cls])
    # A checkpoint as the modules wrote it before: the hyperparameters in their old order.
    old_hparams = {name: module.hparams[name] for name in SAVED_BEFORE[cls]}
    old_hparams["lr"] = 0.0123
    path = tmp_path / "old.ckpt"
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": old_hparams}
    torch.save({**checkpoint, "pytorch-lightning_version": L.__version__}, path)
    loaded = cls.load_from_checkpoint(path)
    assert loaded.hparams["lr"] == 0.0123
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in module.state_dict().items())


def test_defaults_stay_per_module():
    assert ImageClassifier().hparams.optimizer == "sgd"
    language = LanguageModel(**TINY[LanguageModel]).hparams
    assert (language.optimizer, language.lr, language.betas) == ("adamw", 1e-3, (0.9, 0.95))
    regressor = Regressor(**TINY[Regressor]).hparams
    assert (regressor.scheduler, regressor.momentum, regressor.lr) == ("constant", 0.0, 0.02)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "lion"}, r"optimizer='lion' is invalid: choose one of sgd, adamw, adam$"),
        ({"scheduler": "linear"}, r"scheduler='linear' is invalid: choose one of cosine, step"),
    ],
)
def test_library_callers_get_one_line_naming_value_and_choices(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ImageClassifier(**kwargs)


@pytest.mark.parametrize(
    "name, expected, decoupled",
    [("sgd", torch.optim.SGD, None), ("adamw", torch.optim.AdamW, True), ("adam", None, False)],
)
def test_each_optimizer_choice_builds_its_torch_optimizer(
    name, expected, decoupled, tmp_path, recwarn
):
    """``adam`` is torch's Adam with coupled weight decay, not AdamW: the weight-decay methods
    warn about it (docs/integration.md, 'Adam and AdamW'), and only about it."""
    module = Regressor(model_kwargs={"in_features": 3}, optimizer=name, weight_decay=0.01)
    data = DataLoader(TensorDataset(torch.randn(8, 3), torch.randn(8)), batch_size=4)
    fitted = trainer(
        tmp_path, [WeightDecaySchedule("constant")], max_steps=2, enable_checkpointing=False
    )
    fitted.fit(module, data)
    coupled = [w for w in recwarn if "(coupled)" in str(w.message)]
    assert len(coupled) == (name == "adam")
    (optimizer,) = fitted.optimizers
    assert type(optimizer) is (expected or torch.optim.Adam)
    (group,) = optimizer.param_groups
    assert group["lr"] == 0.02 and group["weight_decay"] == 0.01
    assert group.get("decoupled_weight_decay") is decoupled


def old_lr_factor(kind: str, total: int, warmup: float, milestones=(), gamma: float = 0.1):
    """The hand-written multiplier the modules used before (re-derived): linear warm-up
    ``(t + 1) / warmup`` while ``t < warmup``, then cosine from 1 to 0 over the rest, ``gamma``
    per milestone reached (fractions of ``total``), or 1."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
            return (1 + math.cos(math.pi * progress)) / 2
        if kind == "step":
            return gamma ** sum(step >= m * total for m in milestones)
        return 1.0

    return factor


def scheduled_lrs(kind, total, warmup, milestones, steps, state=None):
    """The lr of each of ``steps`` steps under ``lr_scheduler`` (from ``state`` if given), and
    the optimizer's and scheduler's state after them."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.3, momentum=0.9)
    scheduler = lr_scheduler(optimizer, kind, total, warmup, milestones, gamma=0.2)
    if state is not None:
        optimizer.load_state_dict(state[0])
        scheduler.load_state_dict(state[1])
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        parameter.grad = torch.ones(1)
        optimizer.step()
        scheduler.step()
    return lrs, (optimizer.state_dict(), scheduler.state_dict())


CASES = [
    (kind, total, warmup, milestones)
    for kind in ("cosine", "step", "constant")
    for total in (1, 7, 40)
    for warmup in (0, 1, 3, 12)
    for milestones in ((0.5, 0.75), (0.0, 0.2))
]


def test_lr_schedule_matches_the_hand_written_factor_per_step():
    for kind, total, warmup, milestones in CASES:
        factor = old_lr_factor(kind, total, warmup, milestones, gamma=0.2)
        lrs, _ = scheduled_lrs(kind, total, warmup, milestones, total)
        expected = [0.3 * factor(step) for step in range(total)]
        assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12), (kind, total, warmup)


def test_fractional_warmup_rounds_up_to_whole_steps_ending_at_the_peak():
    lrs, _ = scheduled_lrs("constant", 10, 2.5, (), 5)
    assert lrs == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])


@pytest.mark.parametrize("kind", ["cosine", "step"])
def test_lr_schedule_resumes_exactly(kind):
    """Stopped in the warm-up and after it, a schedule restored from its state_dict (as
    Lightning restores it) continues with the same learning rates, bit for bit."""
    through, _ = scheduled_lrs(kind, 30, 6, (0.5, 0.75), 30)
    for stop in (3, 6, 17):
        first, state = scheduled_lrs(kind, 30, 6, (0.5, 0.75), stop)
        rest, _ = scheduled_lrs(kind, 30, 6, (0.5, 0.75), 30 - stop, state)
        assert first + rest == through, stop


class LoggedEveryStep(ImageClassifier):
    """The logging as a Lightning user writes it: ``self.log`` of the loss tensor and of
    torchmetrics' ``MulticlassAccuracy`` objects at every step; Lightning averages the tensor
    over the epoch weighted by batch size."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reference = torch.nn.ModuleDict(
            {
                f"{stage}_top{k}": MulticlassAccuracy(10, top_k=k, average="micro")
                for stage in ("train", "val", "test")
                for k in (1, 5)
            }
        )

    def step(self, batch, stage, batch_idx=0):
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True)
        for key, name in (
            (f"{stage}_top1", f"{stage}/acc"),
            (f"{stage}_top5", f"{stage}/acc_top5"),
        ):
            if key in self.accuracy:
                self.reference[key](logits, y)
                self.log(name, self.reference[key], on_epoch=True, prog_bar=name.endswith("acc"))
        return loss


def logged_rows(cls, tmp_path, name):
    """Every row a CSVLogger wrote for two epochs of ``cls``, and the final callback metrics."""
    L.seed_everything(0)
    module = cls("cnn_digits", lr=0.05)
    images = torch.randn(97, 1, 8, 8)
    labels = torch.randint(0, 10, (97,))
    train = DataLoader(TensorDataset(images[:67], labels[:67]), batch_size=10, shuffle=True)
    val = DataLoader(TensorDataset(images[67:], labels[67:]), batch_size=10)
    logger = L.pytorch.loggers.CSVLogger(tmp_path, name=name)
    fitted = trainer(tmp_path, [], max_epochs=2, logger=logger, log_every_n_steps=3)
    fitted.fit(module, train, val)
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return rows, {k: float(v) for k, v in fitted.callback_metrics.items()}


def test_metrics_logged_at_logging_steps_equal_those_logged_at_every_step(tmp_path):
    """``log_metrics`` calls ``self.log`` only at the first batch and the steps the logger
    writes, yet the logger gets the same rows (every step value of those steps, the epoch means
    over every batch, with 7 batches of 10 and one of 7 an epoch) and the trainer the same
    epoch values in ``callback_metrics`` as from a ``self.log`` at every step; its step values
    are those of the last step written (11), not of the last step (13)."""
    ours, our_callback_metrics = logged_rows(ImageClassifier, tmp_path, "ours")
    theirs, their_callback_metrics = logged_rows(LoggedEveryStep, tmp_path, "theirs")
    assert len(ours) == len(theirs)
    step_rows = [row["step"] for row in ours if row["train/loss_step"]]
    assert step_rows == ["2", "5", "8", "11"]  # every third of the 14 steps
    assert {"train/loss_step", "train/acc_step", "train/loss_epoch", "val/acc_top5"} <= set(ours[0])
    for our_row, their_row in zip(ours, theirs):
        assert our_row.keys() == their_row.keys()
        for key, value in their_row.items():
            if value == "":
                assert our_row[key] == "", key
            else:
                assert float(our_row[key]) == pytest.approx(float(value), rel=1e-6, abs=1e-7), key
    assert our_callback_metrics.keys() == their_callback_metrics.keys()
    for key, value in their_callback_metrics.items():
        if not key.endswith("_step"):
            assert our_callback_metrics[key] == pytest.approx(value, rel=1e-6), key
    last_written = [row for row in theirs if row["train/loss_step"]][-1]["train/loss_step"]
    assert our_callback_metrics["train/loss_step"] == pytest.approx(float(last_written))
