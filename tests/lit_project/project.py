"""A Lightning project written the common way, which has never heard of sparsify: a
LitModule receiving its network as an ``nn.Module`` and keeping it through
``save_hyperparameters``, Adam with ReduceLROnPlateau, metrics logged as ``train/acc`` and
``val/acc``. The integration tests add sparsify's callbacks to it through configuration only.
"""

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class MLP(nn.Module):
    """A first layer holding most of the weights, like the template's MNIST MLP."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.model = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 16),
            nn.ReLU(),
            nn.Linear(16, 10),
        )

    def forward(self, x):
        return self.model(x)


class LitClassifier(L.LightningModule):
    def __init__(self, net: nn.Module, lr: float = 3e-3, weight_decay: float = 0.0):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.net = net

    def forward(self, x):
        return self.net(x)

    def step(self, batch, stage):
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self.step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self.step(batch, "val")

    def test_step(self, batch, batch_idx):
        self.step(batch, "test")

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", patience=2)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"},
        }


class Digits(L.LightningDataModule):
    """sklearn's 8×8 digits (bundled with sklearn): 1200 train, 300 val, 297 test."""

    def __init__(self, batch_size: int = 64):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        x, y = load_digits(return_X_y=True)
        x = torch.tensor(x, dtype=torch.float32) / 16.0
        y = torch.tensor(y)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        x, y = x[order], y[order]
        self.train = TensorDataset(x[:1200], y[:1200])
        self.val = TensorDataset(x[1200:1500], y[1200:1500])
        self.test = TensorDataset(x[1500:], y[1500:])

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=300)

    def test_dataloader(self):
        return DataLoader(self.test, batch_size=300)


def build() -> LitClassifier:
    """The module, built without arguments (for ``sparsify export --factory project:build``)."""
    return LitClassifier(net=MLP())
