"""Pieces shared by the datamodules: the loaders over their splits, loader settings, and a
transformed index subset."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from sparsify.errors import ConfigError


class TransformedSubset(Dataset):
    """The items ``indices`` of ``base`` (which returns untransformed ``(image, label)``), with
    ``transform`` applied to the image. Two of them share one loaded dataset, so a training set
    and the validation images held out from it never load the data twice."""

    def __init__(self, base: Dataset, indices, transform):
        self.base, self.indices, self.transform = base, list(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.base[self.indices[i]]
        return self.transform(image), label


def check_loader_args(batch_size: int, num_workers: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid: must be >= 1")
    if num_workers < 0:
        raise ConfigError(f"num_workers={num_workers!r} is invalid: must be >= 0")


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    pin_memory: bool,
    persistent_workers: bool,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        # Pinning only helps copies to a GPU; without one, PyTorch warns and ignores it.
        pin_memory=pin_memory and torch.cuda.is_available(),
        persistent_workers=persistent_workers and num_workers > 0,
    )


class SplitDataModule(L.LightningDataModule):
    """The loaders of a datamodule whose ``setup`` makes ``train_set`` (shuffled), ``val_set``
    and ``test_set`` (one without a test split assigns ``test_dataloader = val_dataloader``),
    from ``hparams`` ``batch_size``, ``num_workers`` and, where the datamodule has them,
    ``pin_memory`` and ``persistent_workers``."""

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        hp = self.hparams
        return make_loader(
            dataset,
            hp.batch_size,
            shuffle,
            hp.num_workers,
            hp.get("pin_memory", False),
            hp.get("persistent_workers", False),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
