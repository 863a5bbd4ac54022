"""A LightningModule that has never heard of sparsify, data for it, and what the tests share."""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparsify.app.cli import main


class UserModule(L.LightningModule):
    """The user's own module: its own network, its own single-group optimizer."""

    def __init__(self, lr=0.1, weight_decay=1e-3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
        self.lr, self.weight_decay = lr, weight_decay

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(
            self.parameters(), lr=self.lr, momentum=0.9, weight_decay=self.weight_decay
        )


def blobs(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 8, generator=g) * 0.5 + F.one_hot(y, 8).float() * 2
    return x, y


def loaders(batch_size=16):
    x, y = blobs()
    train = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(*blobs(48, seed=1)), batch_size=batch_size)
    return train, val


# A Trainer that logs and checkpoints nothing and prints no progress bar or model summary.
QUIET = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def trainer(tmp_path, callbacks, max_epochs=4, **kwargs):
    """A quiet CPU Trainer, checkpointing as usual unless ``kwargs`` say otherwise."""
    settings = {**QUIET, "enable_checkpointing": True, "accelerator": "cpu", "devices": 1}
    return L.Trainer(
        max_epochs=max_epochs,
        callbacks=callbacks,
        default_root_dir=tmp_path,
        **{**settings, **kwargs},
    )


class RecordGroupOption(L.Callback):
    """Records the option ``key`` of each param group (its weight decay, its learning rate) as
    the optimizer step sees it: ``seen`` holds a list over the groups a step."""

    def __init__(self, key: str):
        self.key, self.seen = key, []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.seen.append([g[self.key] for g in optimizer.param_groups])


SCRIPTS = Path(__file__).parents[1] / "scripts"


def load_script(name: str):
    """The module of ``scripts/<name>.py`` (the scripts are no package), registered in
    ``sys.modules`` so that its dataclasses can look their module up."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_ranks(command: list[str], timeout: float) -> list[str]:
    """Start ``command`` as the two ranks of one DDP group on this machine (gloo, one thread
    each), as torchrun would, wait for both, assert both succeeded; return their outputs."""
    base = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent),
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": "2",
        "NODE_RANK": "0",
    }
    ranks = [
        subprocess.Popen(
            command,
            env={**base, "LOCAL_RANK": str(rank), "RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [rank.communicate(timeout=timeout)[0] for rank in ranks]
    for rank, output in zip(ranks, outputs):
        assert rank.returncode == 0, output[-4000:]
    return outputs


class RecordBatches(L.LightningModule):
    """A user's linear classifier of 28×28 images that keeps ``record(x, y)`` of each training
    batch, epoch by epoch, in ``epochs``."""

    def __init__(self, record):
        super().__init__()
        self.layer = nn.Linear(784, 10)
        self.record, self.epochs = record, []

    def on_train_epoch_start(self):
        self.epochs.append([])

    def training_step(self, batch, _):
        x, y = batch
        self.epochs[-1].append(self.record(x, y))
        return F.cross_entropy(self.layer(x.flatten(1)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit_error(argv: list[str], root: Path, capsys) -> str:
    """The error line of ``sparsify fit *argv --trainer.default_root_dir=root``, which must exit
    2 with one ``sparsify: error:`` line and no traceback, having written nothing to ``root``."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *argv, f"--trainer.default_root_dir={root}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("sparsify: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert not root.exists()  # nothing written
    return lines[0]
