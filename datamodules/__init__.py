"""LightningDataModules (import: ``sparsify.datamodules``)."""

from sparsify.datamodules.digits import DigitsDataModule

__all__ = ["DigitsDataModule"]
