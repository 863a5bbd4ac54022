"""Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): 60,000 training and 10,000 test images of
clothing, 28×28 grayscale, 10 classes, read from the four original idx files.

The idx format (LeCun's MNIST page): a big-endian header, the magic number ``0x00000803``
(unsigned bytes, 3 dimensions) then the three sizes for images, ``0x00000801`` then the count
for labels, then the bytes. The files may be gzipped (``.gz``) or not.

Where they are looked for: ``data_dir`` and its ``FashionMNIST/raw`` (torchvision's layout);
without ``data_dir``, Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``), then ``data/FashionMNIST/raw``. ``download=True``
fetches them with torchvision's downloader into ``<data_dir or data>/FashionMNIST/raw``.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import FashionMNIST

from sparsify.datamodules.common import (
    Loader,
    SplitDataModule,
    TransformedSubset,
    check_loader_args,
)
from sparsify.errors import ConfigError, check_choice

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_ROOT = "data"
TORCHVISION_SUBDIR = Path("FashionMNIST") / "raw"
# split: (images file, labels file, number of images)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
MEAN, STD = (0.2860,), (0.3530,)  # of the 60,000 training images, pixels scaled to [0, 1]
HOW_TO_GET = (
    "install it with `apt-get install dataset-fashion-mnist` (into /usr/share/datasets/"
    "fashion-mnist, read when data_dir is unset) or add --data.init_args.download=true"
)


class FashionMNISTDataModule(SplitDataModule):
    """Fashion-MNIST with a validation set held out from the training images; the official
    test set is left as it is.

    Args:
        data_dir: folder holding the four idx files (or their ``FashionMNIST/raw``); ``None``:
            Debian's location, then ``data/FashionMNIST/raw``.
        download: download them with torchvision into ``<data_dir>/FashionMNIST/raw`` when
            they are not found.
        batch_size: images per batch on each device.
        val_size: training images held out for validation, chosen by ``seed``. ``0`` trains
            on all 60,000 and validates on the test set.
        seed: seed of the validation split. The device loader's order and augmentation follow
            the run's seed (``seed_everything``), else this one.
        augment: a random 28×28 crop of the image zero-padded by ``crop_padding`` pixels and a
            random horizontal flip, on the training images.
        crop_padding: padding of the random crop.
        loader: ``"device"``: the images stay one uint8 tensor on the accelerator and each batch
            is one vectorized gather (``DeviceBatches``); ``"torch"``: a per-image ``Dataset``
            of PIL images with torchvision transforms in a ``DataLoader``.
        num_workers, pin_memory, persistent_workers: for ``loader="torch"``'s ``DataLoader``s.
    """

    num_classes = 10
    mean, std = MEAN, STD

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = False,
        batch_size: int = 128,
        val_size: int = 5000,
        seed: int = 0,
        augment: bool = False,
        crop_padding: int = 2,
        loader: Loader = "device",
        num_workers: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ):
        super().__init__()
        check_choice("loader", loader, Loader)
        train_size = FILES["train"][2]
        if not 0 <= val_size < train_size:
            raise ConfigError(f"val_size={val_size!r} is invalid: must be in [0, {train_size})")
        if crop_padding < 0:
            raise ConfigError(f"crop_padding={crop_padding!r} is invalid: must be >= 0")
        check_loader_args(batch_size, num_workers)
        self.save_hyperparameters()
        self.crop_padding, self.flip = (crop_padding, True) if augment else (0, False)
        if not download:  # fail at once, before a logger or checkpoint writes anything
            self.splits = read_splits(self.folder())

    def candidates(self) -> list[Path]:
        if self.hparams.data_dir is None:
            return [DEBIAN_DIR, Path(DEFAULT_ROOT) / TORCHVISION_SUBDIR]
        root = Path(self.hparams.data_dir)
        return [root, root / TORCHVISION_SUBDIR]

    def folder(self) -> Path:
        """The first candidate folder holding any of the four files; a ConfigError naming the
        first file missing there (or the folders searched) unless it holds all four."""
        names = [name for images, labels, _ in FILES.values() for name in (images, labels)]
        for folder in self.candidates():
            found = [find(folder, name) for name in names]
            if any(found):
                for name, path in zip(names, found):
                    if path is None:
                        raise ConfigError(
                            f"Fashion-MNIST file {str(folder / name)!r} (or .gz) is missing; "
                            + HOW_TO_GET
                        )
                return folder
        searched = " or ".join(repr(str(folder)) for folder in self.candidates())
        raise ConfigError(f"Fashion-MNIST not found: no idx files in {searched}; {HOW_TO_GET}")

    def prepare_data(self) -> None:
        """Download when asked and the files are not found (on one process per node)."""
        if not self.hparams.download:
            return
        try:
            self.folder()
        except ConfigError:
            root = self.hparams.data_dir or DEFAULT_ROOT
            try:
                for train in (True, False):
                    FashionMNIST(root, train=train, download=True)
            except Exception as err:  # no network, disk full: say what to do instead
                raise ConfigError(
                    f"download=True failed for Fashion-MNIST into {root!r} ({err}); install it "
                    "with `apt-get install dataset-fashion-mnist`"
                ) from None

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "test_set"):
            return
        hp = self.hparams
        if not hasattr(self, "splits"):  # downloaded by prepare_data
            self.splits = read_splits(self.folder())
        (train_x, train_y), (test_x, test_y) = self.splits["train"], self.splits["test"]
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(hp.seed))
        held_out, kept = order[: hp.val_size], order[hp.val_size :]
        test = (test_x, test_y)
        val = (train_x[held_out], train_y[held_out]) if hp.val_size else test
        self.device_sets = {"train": (train_x[kept], train_y[kept]), "val": val, "test": test}
        normalize = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
        augmentation = [
            transforms.RandomCrop(28, padding=hp.crop_padding),
            transforms.RandomHorizontalFlip(),
        ]
        train_transform = transforms.Compose((augmentation if hp.augment else []) + normalize)
        eval_transform = transforms.Compose(normalize)
        train_images = GrayImages(train_x, train_y)
        self.train_set = TransformedSubset(train_images, kept.tolist(), train_transform)
        self.test_set = TransformedSubset(GrayImages(*test), range(len(test_y)), eval_transform)
        self.val_set = (
            TransformedSubset(train_images, held_out.tolist(), eval_transform)
            if hp.val_size
            else self.test_set
        )


class GrayImages(Dataset):
    """``(PIL image, label)`` from ``N × 1 × H × W`` uint8 pixels, as torchvision's MNIST
    datasets return them before their transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images[:, 0].numpy(), labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return Image.fromarray(self.images[i], mode="L"), self.labels[i]


def find(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists (the plain file first)."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def read_splits(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {split: read_split(folder, split) for split in FILES}


def read_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N × 1 × 28 × 28 uint8 images, N int64 labels)`` of ``"train"`` or ``"test"``."""
    images_name, labels_name, count = FILES[split]
    images_path, labels_path = find(folder, images_name), find(folder, labels_name)
    images = read_idx(images_path, IMAGES_MAGIC, (count, 28, 28))
    labels = read_idx(labels_path, LABELS_MAGIC, (count,))
    if len(labels) != len(images):
        raise ConfigError(
            f"Fashion-MNIST file {str(labels_path)!r} is corrupt: {len(labels)} labels for "
            f"{len(images)} images in {str(images_path)!r}; {HOW_TO_GET}"
        )
    if labels.max() > 9:
        raise ConfigError(
            f"Fashion-MNIST file {str(labels_path)!r} is corrupt: a label above 9; {HOW_TO_GET}"
        )
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()


def read_idx(path: Path, magic: int, shape: tuple[int, ...]) -> np.ndarray:
    """The uint8 array of an idx file, whose header must give ``magic`` and ``shape`` (the
    first size may be smaller: a subset) and whose bytes must all be there."""

    def corrupt(what: str) -> ConfigError:
        return ConfigError(f"Fashion-MNIST file {str(path)!r} is {what}; {HOW_TO_GET}")

    header_size = 4 * (1 + len(shape))
    try:
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as file:
            content = file.read()
    except (OSError, EOFError, zlib.error) as err:
        raise corrupt(f"truncated or corrupt ({err})") from None
    if len(content) < header_size:
        raise corrupt("truncated (no complete header)")
    found_magic, *sizes = struct.unpack(f">{1 + len(shape)}I", content[:header_size])
    if found_magic != magic:
        raise corrupt(
            f"not an idx file of this kind (magic 0x{found_magic:08x}, not 0x{magic:08x})"
        )
    if tuple(sizes[1:]) != shape[1:] or not 0 < sizes[0] <= shape[0]:
        raise corrupt(f"of the wrong shape {tuple(sizes)} (expected {shape})")
    expected = header_size + int(np.prod(sizes))
    if len(content) != expected:
        what = "truncated" if len(content) < expected else "too long"
        raise corrupt(f"{what} ({len(content)} bytes, expected {expected})")
    return np.frombuffer(content, np.uint8, offset=header_size).reshape(sizes).copy()
