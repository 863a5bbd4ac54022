"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from torchvision's python-pickle files.

Training images get the standard augmentation of He et al. (2016): a random 32×32 crop of the
image zero-padded by 4 pixels on each side, a random horizontal flip, then normalization by the
per-channel mean and standard deviation of the 50,000 training images. Validation and test
images are only normalized. ``loader="device"`` does the same on batches gathered from one uint8
tensor on the accelerator (``DeviceBatches``); ``loader="torch"`` per image in a ``DataLoader``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torchvision import transforms
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity

from sparsify.datamodules.common import (
    Loader,
    SplitDataModule,
    TransformedSubset,
    check_loader_args,
)
from sparsify.errors import ConfigError, check_choice

# name: (torchvision class, number of classes, per-channel mean, per-channel std)
DATASETS = {
    "cifar10": (CIFAR10, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": (CIFAR100, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
TRAIN_SIZE = 50_000
CROP_PADDING = 4
DOWNLOAD_FLAG = "--data.init_args.download=true"


class CIFARDataModule(SplitDataModule):
    """CIFAR-10 or CIFAR-100, with a validation set held out from the training images.

    Args:
        dataset: ``"cifar10"`` or ``"cifar100"``.
        data_dir: folder holding ``cifar-10-batches-py`` / ``cifar-100-python`` (torchvision's
            layout), or where ``download`` puts them.
        download: download and extract the archive into ``data_dir`` when it is not there.
        batch_size: images per batch on each device.
        val_size: training images held out for validation, chosen by ``seed`` (the same
            split for every training seed). ``0`` trains on all 50,000 and validates on the
            10,000 test images, as the papers report test accuracy.
        seed: seed of the validation split.
        augment: random crop and flip on the training images.
        loader: ``"device"``: the images stay one uint8 tensor on the accelerator and each
            batch is one vectorized gather (``DeviceBatches``), order and augmentation from the
            run's seed (``seed_everything``), else ``seed``; ``"torch"``: torchvision's
            per-image dataset in a ``DataLoader``.
        num_workers, pin_memory, persistent_workers: passed to ``loader="torch"``'s
            ``DataLoader``s.
    """

    def __init__(
        self,
        dataset: Literal["cifar10", "cifar100"] = "cifar10",
        data_dir: str = "data",
        download: bool = False,
        batch_size: int = 256,
        val_size: int = 5000,
        seed: int = 0,
        augment: bool = True,
        loader: Loader = "device",
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ):
        super().__init__()
        check_choice("dataset", dataset, DATASETS)
        check_choice("loader", loader, Loader)
        if not 0 <= val_size < TRAIN_SIZE:
            raise ConfigError(f"val_size={val_size!r} is invalid: must be in [0, {TRAIN_SIZE})")
        check_loader_args(batch_size, num_workers)
        self.save_hyperparameters()
        self.dataset_class, self.num_classes, mean, std = DATASETS[dataset]
        self.mean, self.std = mean, std
        self.crop_padding, self.flip = (CROP_PADDING, True) if augment else (0, False)
        normalize = [transforms.ToTensor(), transforms.Normalize(mean, std)]
        augmentation = [
            transforms.RandomCrop(32, padding=CROP_PADDING),
            transforms.RandomHorizontalFlip(),
        ]
        self.train_transform = transforms.Compose((augmentation if augment else []) + normalize)
        self.eval_transform = transforms.Compose(normalize)
        if not download:  # fail at once, before a logger or checkpoint writes anything
            self._check_files(verify_md5=False)

    @property
    def folder(self) -> Path:
        return Path(self.hparams.data_dir) / self.dataset_class.base_folder

    def prepare_data(self) -> None:
        """Download when asked, then check the files' md5 sums (on one process per node)."""
        if self.hparams.download and self._missing_files():
            root = self.hparams.data_dir
            try:
                for train in (True, False):
                    self.dataset_class(root, train=train, download=True)
            except Exception as err:  # no network, disk full: say what to do instead
                raise ConfigError(
                    f"download=True failed for {self.hparams.dataset} into {root!r} ({err}): "
                    f"extract {self.dataset_class.url} into {root!r} yourself"
                ) from None
        self._check_files(verify_md5=True)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "test_set"):
            return
        # Every rank (prepare_data runs on one process per node); torchvision checks the md5s.
        self._check_files(verify_md5=False)
        root = self.hparams.data_dir
        train = self.dataset_class(root, train=True)
        test = self.dataset_class(root, train=False, transform=self.eval_transform)
        order = torch.randperm(
            len(train), generator=torch.Generator().manual_seed(self.hparams.seed)
        )
        held_out, kept = order[: self.hparams.val_size], order[self.hparams.val_size :]
        self.train_set = TransformedSubset(train, kept.tolist(), self.train_transform)
        self.val_set = (
            TransformedSubset(train, held_out.tolist(), self.eval_transform)
            if len(held_out)
            else test
        )
        self.test_set = test
        (train_x, train_y), test_xy = as_tensors(train), as_tensors(test)
        self.device_sets = {
            "train": (train_x[kept], train_y[kept]),
            "val": (train_x[held_out], train_y[held_out]) if len(held_out) else test_xy,
            "test": test_xy,
        }

    def _missing_files(self) -> list[str]:
        files = [name for name, _ in self.dataset_class.train_list + self.dataset_class.test_list]
        files.append(self.dataset_class.meta["filename"])
        return [name for name in files if not (self.folder / name).is_file()]

    def _check_files(self, verify_md5: bool) -> None:
        """Every file present (and passing torchvision's md5 check), or a ConfigError saying
        what was expected, what was found and how to get it."""
        data_dir, folder = Path(self.hparams.data_dir), self.folder
        missing = self._missing_files()
        if missing:
            if not data_dir.is_dir():
                found = f"{str(data_dir)!r} does not exist"
            elif not folder.is_dir():
                found = f"no {folder.name}/ in it"
            else:
                found = f"{folder.name}/ lacks {', '.join(missing)}"
            raise ConfigError(
                f"data_dir={str(data_dir)!r} is invalid: expected {self.hparams.dataset} in "
                f"{str(folder)!r}, found {found}; add {DOWNLOAD_FLAG} to download it"
            )
        if not verify_md5:
            return
        checked = self.dataset_class.train_list + self.dataset_class.test_list
        checked = checked + [[self.dataset_class.meta["filename"], self.dataset_class.meta["md5"]]]
        for name, md5 in checked:
            if not check_integrity(str(folder / name), md5):
                raise ConfigError(
                    f"data_dir={str(data_dir)!r} is invalid: {str(folder / name)!r} fails its md5 "
                    f"check (a partial or corrupted download); delete {str(folder)!r} and add "
                    f"{DOWNLOAD_FLAG}"
                )


def as_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N × 3 × 32 × 32 uint8 images, N int64 labels)`` of a torchvision CIFAR dataset."""
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(dataset.targets, dtype=torch.long)
