"""ImageNet (ILSVRC-2012) from a local folder in torchvision's ``ImageFolder`` layout::

    <data_dir>/train/<class>/*.JPEG     1,281,167 images in 1,000 class folders (n01440764, ...)
    <data_dir>/val/<class>/*.JPEG       50,000 images, sorted into the same class folders

Training images: ``RandomResizedCrop(image_size)`` (scale 0.08–1) and a horizontal flip;
evaluation images: resize the short side to ``image_size / 0.875`` (256 for 224) and take the
centre ``image_size`` crop; both normalized by the ImageNet per-channel mean and std. The labels
of ImageNet's test images are not public, so validation and test both use ``val/``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import transforms
from torchvision.datasets import ImageFolder

from sparsify.datamodules.common import SplitDataModule, TransformedSubset, check_loader_args
from sparsify.errors import ConfigError, check_counts

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LAYOUT = "<data_dir>/train/<class>/*.JPEG and <data_dir>/val/<class>/*.JPEG"


class ImageNetDataModule(SplitDataModule):
    """ImageNet, or a deterministic class / per-class sample subset of it for quick runs.

    Args:
        data_dir: the folder holding ``train/`` and ``val/``.
        batch_size: images per batch on each device.
        image_size: side of the training and evaluation crops.
        resize_size: short side the evaluation images are resized to before the centre crop;
            default ``round(image_size / 0.875)``.
        classes: ``None`` for every class folder of ``train/``; a number ``k`` for ``k``
            classes drawn by ``seed``; or a list of class folder names. Labels are renumbered
            ``0 … k-1`` in sorted folder order.
        samples_per_class: training images kept per class, drawn by ``seed`` (``None``: all).
        val_samples_per_class: the same for ``val/``.
        seed: seed of the class and sample subsets (not of training).
        augment: random resized crop and flip on the training images (else the evaluation
            transform).
        num_workers, pin_memory, persistent_workers: passed to the ``DataLoader``s.
    """

    def __init__(
        self,
        data_dir: str = "data/imagenet",
        batch_size: int = 256,
        image_size: int = 224,
        resize_size: int | None = None,
        classes: int | list[str] | None = None,
        samples_per_class: int | None = None,
        val_samples_per_class: int | None = None,
        seed: int = 0,
        augment: bool = True,
        num_workers: int = 8,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ):
        super().__init__()
        check_loader_args(batch_size, num_workers)
        resize_size = resize_size or round(image_size / 0.875)
        check_counts(image_size=image_size, resize_size=resize_size)
        if resize_size < image_size:
            raise ConfigError(
                f"resize_size={resize_size!r} is invalid: must be >= image_size={image_size}"
            )
        if isinstance(classes, int) and classes < 1:
            raise ConfigError(f"classes={classes!r} is invalid: a number >= 1, a list or null")
        if isinstance(classes, list) and not classes:
            raise ConfigError("classes=[] is invalid: a number >= 1, a non-empty list or null")
        for name, value in (
            ("samples_per_class", samples_per_class),
            ("val_samples_per_class", val_samples_per_class),
        ):
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value!r} is invalid: must be >= 1 or null (all)")
        self.save_hyperparameters()
        if isinstance(classes, list):
            self.num_classes = len(classes)
        else:
            self.num_classes = classes or 1000  # the number of class folders, after setup
        normalize = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
        self.eval_transform = transforms.Compose(
            [transforms.Resize(resize_size), transforms.CenterCrop(image_size), *normalize]
        )
        self.train_transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size),
                transforms.RandomHorizontalFlip(),
                *normalize,
            ]
        )
        if not augment:
            self.train_transform = self.eval_transform
        self.chosen_classes()  # fail at once, before a logger or checkpoint writes anything

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "val_set"):
            return
        hp = self.hparams
        classes = self.chosen_classes()
        self.classes, self.num_classes = classes, len(classes)
        root = Path(hp.data_dir)
        train = _ClassFolder(root / "train", classes)
        val = _ClassFolder(root / "val", classes)
        self.train_set = TransformedSubset(
            train, _per_class(train.targets, hp.samples_per_class, hp.seed), self.train_transform
        )
        self.val_set = TransformedSubset(
            val, _per_class(val.targets, hp.val_samples_per_class, hp.seed), self.eval_transform
        )

    def chosen_classes(self) -> list[str]:
        """The class folders used, checking that ``train/`` and ``val/`` both have them."""
        hp = self.hparams
        root = Path(hp.data_dir)
        train, val = root / "train", root / "val"
        _check_layout(root, train, val)
        available = _class_folders(train)
        wanted = hp.classes
        if isinstance(wanted, int):
            if wanted > len(available):
                raise ConfigError(
                    f"classes={wanted} is invalid: {str(train)!r} has {len(available)} class "
                    "folders"
                )
            order = torch.randperm(len(available), generator=torch.Generator().manual_seed(hp.seed))
            wanted = sorted(available[i] for i in order[:wanted].tolist())
        elif wanted is None:
            wanted = available
        else:
            wanted = sorted(wanted)
            unknown = sorted(set(wanted) - set(available))
            if unknown:
                raise ConfigError(
                    f"classes={unknown[:3]} is invalid: no such class folders in {str(train)!r} "
                    f"(it has {', '.join(available[:3])}{', ...' if len(available) > 3 else ''})"
                )
        empty = [
            f"{split.name}/{name}"
            for split in (train, val)
            for name in wanted
            if (split / name).is_dir() and not any((split / name).iterdir())
        ]
        if empty:
            raise ConfigError(
                f"data_dir={str(root)!r} is invalid: expected the layout {LAYOUT}, found empty "
                f"class folders: {', '.join(empty[:3])}" + (", ..." if len(empty) > 3 else "")
            )
        lacking = sorted(set(wanted) - set(_class_folders(val)))
        if lacking:
            raise ConfigError(
                f"data_dir={str(root)!r} is invalid: expected the layout {LAYOUT}, found "
                f"val/ without the class folders {', '.join(lacking[:3])}"
                + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")
            )
        return wanted


class _ClassFolder(ImageFolder):
    """``ImageFolder`` over the given class folders only (so a subset never scans the rest),
    returning PIL images; labels follow the order of ``classes``."""

    def __init__(self, root: Path, classes: list[str]):
        self.wanted = classes
        try:
            super().__init__(str(root))
        except FileNotFoundError as err:  # a class folder without images
            raise ConfigError(
                f"data_dir={str(root.parent)!r} is invalid: expected the layout {LAYOUT}, "
                f"found class folders without images in {str(root)!r} ({str(err).splitlines()[0]})"
            ) from None

    def find_classes(self, directory):
        return self.wanted, {name: i for i, name in enumerate(self.wanted)}


def _class_folders(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())


def _check_layout(root: Path, train: Path, val: Path) -> None:
    found = None
    if not root.is_dir():
        found = f"{str(root)!r} does not exist"
    else:
        for split in (train, val):
            if not split.is_dir():
                contents = sorted(entry.name for entry in root.iterdir())
                shown = ", ".join(contents[:5]) + (", ..." if len(contents) > 5 else "")
                found = f"no {split.name}/ in it (it holds: {shown or 'nothing'})"
                break
            if not _class_folders(split):
                files = sum(1 for _ in split.iterdir())
                plural = "" if files == 1 else "s"
                found = f"{split.name}/ with {files} file{plural} and no class folders" + (
                    " (sort the validation images into class folders, e.g. with valprep.sh)"
                    if split is val and files
                    else ""
                )
                break
    if found:
        raise ConfigError(
            f"data_dir={str(root)!r} is invalid: expected the layout {LAYOUT}, found {found}"
        )


def _per_class(targets: list[int], count: int | None, seed: int) -> list[int]:
    """Indices of at most ``count`` items of each label, drawn by ``seed`` (all if None)."""
    if count is None:
        return list(range(len(targets)))
    generator = torch.Generator().manual_seed(seed)
    by_label: dict[int, list[int]] = {}
    for index, label in enumerate(targets):
        by_label.setdefault(label, []).append(index)
    chosen = []
    for label in sorted(by_label):
        indices = by_label[label]
        order = torch.randperm(len(indices), generator=generator)[:count]
        chosen += sorted(indices[i] for i in order.tolist())
    return chosen
