"""One tiny network trained on the same batches, from the same initialization, under Lightning
and under Hugging Face's ``Trainer`` (plain SGD with momentum, constant learning rate, weight
decay on weights and not on biases, as the ``Trainer`` builds it), so that a method's two
adapters can be compared. Importing it skips the test module that imports it where
``transformers`` is not installed."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, SequentialSampler, TensorDataset

transformers = pytest.importorskip("transformers")

EXAMPLES, BATCH = 64, 16
STEPS_PER_EPOCH = EXAMPLES // BATCH
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-3


def examples() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of a teacher network: learnable in a few epochs."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(EXAMPLES, 8, generator=generator)
    labels = (inputs @ torch.randn(8, 4, generator=generator)).argmax(1)
    return inputs, labels


class Net(nn.Module):
    """8 → 16 → 4; ``forward(x, labels)`` returns the loss as a ``Trainer`` expects."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x, labels=None):
        logits = self.fc2(torch.relu(self.fc1(x)))
        if labels is None:  # the logits, as a Lightning module's forward (PaI scores)
            return logits
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """The ``Trainer``'s groups: weight decay on every parameter but the biases."""
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if "bias" not in n], "weight_decay": weight_decay},
        {"params": [p for n, p in named if "bias" in n], "weight_decay": 0.0},
    ]


class LitNet(L.LightningModule):
    def __init__(self, net: nn.Module, weight_decay: float = WEIGHT_DECAY):
        super().__init__()
        self.net, self.weight_decay = net, weight_decay

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = self.net(*batch)["loss"]
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        groups = optimizer_groups(self, self.weight_decay)
        return torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM)


def train_lightning(
    net: nn.Module, callbacks: list, epochs: int, tmp_path, module: type = LitNet, **kwargs
) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=callbacks, default_root_dir=tmp_path, **kwargs,
    )  # fmt: skip
    loader = DataLoader(TensorDataset(*examples()), batch_size=BATCH, shuffle=False)
    trainer.fit(module(net), loader)
    return trainer


class InOrder(transformers.Trainer):
    """A ``Trainer`` that takes the training examples in order, as the Lightning side does."""

    def _get_train_sampler(self, train_dataset=None):
        return SequentialSampler(train_dataset or self.train_dataset)


def train_hf(
    net: nn.Module, callbacks: list, epochs: int, tmp_path, **kwargs
) -> transformers.Trainer:
    inputs, labels = examples()
    settings = {
        "num_train_epochs": epochs, "per_device_train_batch_size": BATCH, "learning_rate": LR,
        "optim": "sgd", "optim_args": f"momentum={MOMENTUM}", "weight_decay": WEIGHT_DECAY,
        "lr_scheduler_type": "constant", "max_grad_norm": 0.0, "logging_strategy": "epoch",
        "save_strategy": "no", "report_to": "none", "use_cpu": True, "disable_tqdm": True,
        "seed": 0, "dataloader_num_workers": 0, **kwargs,
    }  # fmt: skip
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), **settings)
    dataset = [{"x": x, "labels": y} for x, y in zip(inputs, labels)]
    trainer = InOrder(model=net, args=args, train_dataset=dataset, callbacks=callbacks)
    trainer.train()
    return trainer


class LightningDecay(L.Callback):
    """Each param group's weight decay before every optimizer step."""

    def __init__(self):
        self.decay = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.decay.append([g["weight_decay"] for g in optimizer.param_groups])


class TrainerDecay(transformers.TrainerCallback):
    """Each param group's weight decay before every optimizer step."""

    def __init__(self):
        self.decay = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.decay.append([g["weight_decay"] for g in optimizer.param_groups])


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    """The two networks have the same parameters and buffers, equal within float tolerance."""
    one, other = a.state_dict(), b.state_dict()
    assert list(one) == list(other)
    for name in one:
        torch.testing.assert_close(one[name], other[name], rtol=1e-5, atol=1e-6, msg=name)
