"""Variants of the user's module of ``helpers`` for the PILoT and weight-decay tests: one that
logs its train accuracy, one with a learning-rate scheduler, and loaders in a fixed order (so
that a resumed run can be compared exactly with an uninterrupted one)."""

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers import UserModule, blobs


class AccuracyModule(UserModule):
    """Logs ``train/acc`` per epoch, reduced over processes, as a user would for PILoT."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("train/acc", acc, on_step=False, on_epoch=True, sync_dist=True)
        return torch.nn.functional.cross_entropy(logits, y)


class ScheduledModule(AccuracyModule):
    """The user's single group with a per-step LambdaLR (× 0.9 every step)."""

    def configure_optimizers(self):
        opt = super().configure_optimizers()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.9**step)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def ordered_loaders(batch_size=16):
    """Train and validation loaders without shuffling: every run sees the same batches."""
    train = DataLoader(TensorDataset(*blobs()), batch_size=batch_size)
    val = DataLoader(TensorDataset(*blobs(48, seed=1)), batch_size=batch_size)
    return train, val


class RecordGroups(L.Callback):
    """Records, before each optimizer step, each group's (weight decay, lr, parameter ids)."""

    def __init__(self):
        self.seen = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.seen.append(
            [
                (g["weight_decay"], g["lr"], [id(p) for p in g["params"]])
                for g in optimizer.param_groups
            ]
        )
