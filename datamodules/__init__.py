"""LightningDataModules (import: ``sparsify.datamodules``)."""

from sparsify.datamodules.cifar import CIFARDataModule
from sparsify.datamodules.digits import DigitsDataModule
from sparsify.datamodules.fashion_mnist import FashionMNISTDataModule
from sparsify.datamodules.imagenet import ImageNetDataModule
from sparsify.datamodules.synthetic import (
    MatrixSensingDataModule,
    SparseCodingDataModule,
    SparseRegressionDataModule,
)
from sparsify.datamodules.text import TextDataModule

__all__ = [
    "DigitsDataModule",  # first: the default, and the first choice named in error messages
    "CIFARDataModule",
    "FashionMNISTDataModule",
    "ImageNetDataModule",
    "MatrixSensingDataModule",
    "SparseCodingDataModule",
    "SparseRegressionDataModule",
    "TextDataModule",
]
