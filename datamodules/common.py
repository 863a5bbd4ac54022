"""Pieces shared by the datamodules: the loaders of a train / val / test split (per-image
``DataLoader``s or ``DeviceBatches``), a transformed index subset and loader settings."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from sparsify.datamodules.device_loader import DeviceBatches, placement, run_seed
from sparsify.errors import ConfigError, check_counts


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


Loader = Literal["device", "torch"]


def check_loader_args(batch_size: int, num_workers: int) -> None:
    check_counts(batch_size=batch_size)
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
    """The loaders of a datamodule whose ``setup`` makes ``train_set``, ``val_set`` and, if it
    has a test split of its own, ``test_set`` (otherwise the test loader reads ``val_set``).
    Loader settings come from the hyper-parameters: ``batch_size``, ``num_workers`` and, where
    the datamodule has them, ``pin_memory`` and ``persistent_workers`` (``make_loader``).

    With the hyper-parameter ``loader="device"``, ``setup`` makes ``device_sets`` instead: the
    splits' ``(uint8 images, labels)`` by name, read as ``DeviceBatches`` normalized by
    ``mean`` and ``std``, with ``crop_padding`` and ``flip`` on the training images."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    flip: bool = False

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        hp = self.hparams
        pin_memory, persistent = hp.get("pin_memory", False), hp.get("persistent_workers", False)
        return make_loader(dataset, hp.batch_size, shuffle, hp.num_workers, pin_memory, persistent)

    def _device_batches(self, split: str) -> DeviceBatches:
        images, labels = self.device_sets[split]
        device, rank, world_size = placement(self.trainer)
        train = split == "train"
        return DeviceBatches(
            images,
            labels,
            self.mean,
            self.std,
            self.hparams.batch_size,
            shuffle=train,
            crop_padding=self.crop_padding if train else 0,
            flip=self.flip and train,
            seed=run_seed(self.hparams.seed),
            rank=rank,
            world_size=world_size,
            device=device,
        )

    def _on_device(self) -> bool:
        return self.hparams.get("loader") == "device"

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        if self._on_device():
            return self._device_batches("train")
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        if self._on_device():
            return self._device_batches("val")
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        if self._on_device():
            return self._device_batches("test")
        return self._loader(getattr(self, "test_set", self.val_set), shuffle=False)
