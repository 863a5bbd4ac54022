"""scikit-learn's bundled 8×8 handwritten digits: 1,797 real images, 10 classes, no download.

``image_size=32`` upsamples them (bilinear) to CIFAR's 32×32 and ``augment`` adds CIFAR's
random crop (32×32 from the image padded by 4 background pixels; He et al. 2016) to the training
images, without the horizontal flip, which does not preserve a digit: a setting for the CIFAR
ResNets (``resnet20``) on real data that needs no download.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.nn.functional import interpolate
from torch.utils.data import TensorDataset
from torchvision import transforms

from sparsify.datamodules.common import SplitDataModule, TransformedSubset
from sparsify.errors import ConfigError, check_counts


class DigitsDataModule(SplitDataModule):
    """Stratified train/val/test split of the digits set, drawn from ``seed``.

    Pixels (0–16) are scaled to [0, 1], upsampled to ``image_size`` (bilinear; 8 keeps them
    as they are) and standardized with the training set's mean and standard deviation; images
    are ``1 × image_size × image_size``. ``augment``: a random crop of the training images
    padded by ``image_size // 8`` background pixels (pixel value 0) on each side (4 at 32, as
    for CIFAR).
    """

    num_classes = 10

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
        image_size: int = 8,
        augment: bool = False,
    ):
        super().__init__()
        if not (isinstance(image_size, int) and image_size >= 8):
            raise ConfigError(f"image_size={image_size!r} is invalid: an integer >= 8")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < value < 1:
                raise ConfigError(f"{name}={value!r} is invalid: must be in (0, 1)")
        if val_fraction + test_fraction >= 1:
            raise ConfigError(
                f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no "
                "training data: their sum must be < 1"
            )
        check_counts(batch_size=batch_size)
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        hp = self.hparams
        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        if hp.image_size != 8:
            x = interpolate(x, size=hp.image_size, mode="bilinear", align_corners=False)
        y = torch.tensor(digits.target, dtype=torch.long)
        index = torch.arange(len(y))
        rest, test = train_test_split(
            index, test_size=hp.test_fraction, stratify=y, random_state=hp.seed
        )
        train, val = train_test_split(
            rest,
            test_size=hp.val_fraction / (1 - hp.test_fraction),
            stratify=y[rest],
            random_state=hp.seed,
        )
        mean, std = x[train].mean(), x[train].std()
        x = (x - mean) / std
        self.train_set = TensorDataset(x[train], y[train])
        if hp.augment:
            # Padded with the background (pixel 0) as standardized: CIFAR pads before normalizing.
            background = float(-mean / std)
            crop = transforms.RandomCrop(hp.image_size, hp.image_size // 8, fill=background)
            self.train_set = TransformedSubset(self.train_set, range(len(train)), crop)
        self.val_set = TensorDataset(x[val], y[val])
        self.test_set = TensorDataset(x[test], y[test])
