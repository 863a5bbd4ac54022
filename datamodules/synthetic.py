"""Synthetic linear inverse problems with a planted ground truth, for the controlled studies of the
implicit bias of ``m ⊙ w`` and of weight-decay schedules (docs/methods.md, "The controlled study").

Each problem observes a hidden truth through random Gaussian measurements ``a`` with entries
``N(0, 1/samples)`` (so that ``E‖A e‖² = ‖e‖²`` over the training set) and yields float
``(measurement, target)`` pairs:

- sparse regression: ``y = ⟨a, x*⟩``, ``x*`` with ``nonzeros`` entries ±1 (the diagonal linear
  network study: 40 samples, 100 unknowns, 5 non-zeros);
- matrix sensing: ``y = ⟨A, M*⟩`` (trace inner product), ``M* = U Vᵀ`` of rank ``rank`` with
  orthonormal ``U, V`` (all non-zero singular values 1);
- sparse coding: the rows of a random dictionary ``D`` (``signal_dim × atoms``) against the rows
  of ``Y = D Z*``, whose ``signals`` columns each use ``nonzeros`` atoms with codes ±1; fitting
  ``Y[j] ≈ D[j] Z`` for all rows is ``min ‖Y − D Z‖²``.

The truth is ``x_star`` (its shape above). Everything is drawn from ``seed`` at construction,
so the truth is there before ``setup``. Validation and test use fresh measurements of the same
truth without noise: their mean squared error estimates ``‖x − x*‖² / samples``.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset

from sparsify.errors import ConfigError, check_counts


class SyntheticDataModule(L.LightningDataModule):
    """The loaders shared by the synthetic problems; subclasses define ``draw_truth`` and
    ``measure``.

    Args:
        samples: training measurements.
        val_samples: fresh noiseless measurements for validation and test.
        batch_size: ``None`` for full-batch gradient descent (one batch of every sample).
        passes_per_epoch: passes over the training samples in one epoch (full batch: steps
            per epoch), so long runs of small steps need not be thousands of epochs.
        noise: standard deviation of Gaussian noise added to the training targets.
        seed: seed of the truth, the measurements and the noise.
    """

    def __init__(
        self,
        samples: int,
        val_samples: int,
        batch_size: int | None,
        passes_per_epoch: int,
        noise: float,
        seed: int,
    ):
        super().__init__()
        check_counts(samples=samples, val_samples=val_samples, passes_per_epoch=passes_per_epoch)
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} is invalid: >= 1, or null (full batch)")
        if noise < 0:
            raise ConfigError(f"noise={noise!r} is invalid: must be >= 0")
        self.batch_size, self.passes_per_epoch = batch_size, passes_per_epoch
        generator = torch.Generator().manual_seed(seed)
        self.x_star = self.draw_truth(generator)
        scale = samples**-0.5
        self.inputs = torch.randn(samples, *self.input_shape, generator=generator) * scale
        self.targets = self.measure(self.inputs)
        self.targets = self.targets + noise * torch.randn(self.targets.shape, generator=generator)
        self.val_inputs = torch.randn(val_samples, *self.input_shape, generator=generator) * scale
        self.val_targets = self.measure(self.val_inputs)

    input_shape: tuple[int, ...]

    def draw_truth(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def measure(self, inputs: torch.Tensor) -> torch.Tensor:
        """The noiseless targets of ``inputs``, shape ``(count, outputs)``."""
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        if self.batch_size is None:
            full = _RepeatedBatch(self.inputs, self.targets, self.passes_per_epoch)
            return DataLoader(full, batch_size=None)
        dataset = TensorDataset(self.inputs, self.targets)
        sampler = RandomSampler(dataset, num_samples=len(dataset) * self.passes_per_epoch)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        dataset = TensorDataset(self.val_inputs, self.val_targets)
        return DataLoader(dataset, batch_size=self.batch_size or len(dataset))

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


class _RepeatedBatch(Dataset):
    """The whole training set as one batch, ``repeats`` times."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, repeats: int):
        self.batch, self.repeats = (inputs, targets), repeats

    def __len__(self) -> int:
        return self.repeats

    def __getitem__(self, i: int):
        return self.batch


def _signed_sparse(rows: int, columns: int, nonzeros: int, generator) -> torch.Tensor:
    """``columns`` vectors of length ``rows``, each with ``nonzeros`` random entries ±1."""
    truth = torch.zeros(rows, columns)
    for j in range(columns):
        support = torch.randperm(rows, generator=generator)[:nonzeros]
        signs = torch.randint(0, 2, (nonzeros,), generator=generator) * 2.0 - 1.0
        truth[support, j] = signs
    return truth


class SparseRegressionDataModule(SyntheticDataModule):
    """``y = ⟨a, x*⟩`` with ``x*`` of length ``dim`` and ``nonzeros`` entries ±1; inputs
    ``(dim,)``, targets ``(1,)``, ``x_star`` of shape ``(dim,)``."""

    def __init__(
        self,
        samples: int = 40,
        dim: int = 100,
        nonzeros: int = 5,
        val_samples: int = 1000,
        batch_size: int | None = None,
        passes_per_epoch: int = 1,
        noise: float = 0.0,
        seed: int = 0,
    ):
        if not 1 <= nonzeros <= dim:
            raise ConfigError(f"nonzeros={nonzeros!r} is invalid: must be in [1, dim={dim}]")
        self.input_shape, self.nonzeros = (dim,), nonzeros
        super().__init__(samples, val_samples, batch_size, passes_per_epoch, noise, seed)
        self.save_hyperparameters()

    def draw_truth(self, generator):
        return _signed_sparse(self.input_shape[0], 1, self.nonzeros, generator)[:, 0]

    def measure(self, inputs):
        return (inputs @ self.x_star).unsqueeze(1)


class MatrixSensingDataModule(SyntheticDataModule):
    """``y = ⟨A, M*⟩`` with ``M* = U Vᵀ`` of rank ``rank`` (``rows × cols``); inputs
    ``(rows, cols)``, targets ``(1,)``, ``x_star`` = ``M*``."""

    def __init__(
        self,
        samples: int = 200,
        rows: int = 20,
        cols: int = 20,
        rank: int = 2,
        val_samples: int = 1000,
        batch_size: int | None = None,
        passes_per_epoch: int = 1,
        noise: float = 0.0,
        seed: int = 0,
    ):
        if not 1 <= rank <= min(rows, cols):
            raise ConfigError(f"rank={rank!r} is invalid: must be in [1, min(rows, cols)]")
        self.input_shape, self.rank = (rows, cols), rank
        super().__init__(samples, val_samples, batch_size, passes_per_epoch, noise, seed)
        self.save_hyperparameters()

    def draw_truth(self, generator):
        rows, cols = self.input_shape
        u = torch.linalg.qr(torch.randn(rows, self.rank, generator=generator))[0]
        v = torch.linalg.qr(torch.randn(cols, self.rank, generator=generator))[0]
        return u @ v.T

    def measure(self, inputs):
        return (inputs * self.x_star).sum(dim=(1, 2)).unsqueeze(1)


class SparseCodingDataModule(SyntheticDataModule):
    """Rows of the dictionary ``D`` (``signal_dim × atoms``, entries ``N(0, 1/signal_dim)``)
    against the rows of ``Y = D Z*``: inputs ``(atoms,)``, targets ``(signals,)``, ``x_star`` =
    ``Z*`` of shape ``(atoms, signals)``. ``samples`` is ``signal_dim``; validation rows are
    fresh dictionary rows."""

    def __init__(
        self,
        signal_dim: int = 40,
        atoms: int = 100,
        signals: int = 10,
        nonzeros: int = 5,
        val_samples: int = 1000,
        batch_size: int | None = None,
        passes_per_epoch: int = 1,
        noise: float = 0.0,
        seed: int = 0,
    ):
        if not 1 <= nonzeros <= atoms:
            raise ConfigError(f"nonzeros={nonzeros!r} is invalid: must be in [1, atoms={atoms}]")
        check_counts(signals=signals)
        self.input_shape, self.signals, self.nonzeros = (atoms,), signals, nonzeros
        super().__init__(signal_dim, val_samples, batch_size, passes_per_epoch, noise, seed)
        self.save_hyperparameters()

    def draw_truth(self, generator):
        return _signed_sparse(self.input_shape[0], self.signals, self.nonzeros, generator)

    def measure(self, inputs):
        return inputs @ self.x_star
