"""FLOPs of training and inference as RigL counts them (``sparsify.flops``)."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities.data import extract_batch_size

from sparsify.errors import ConfigError
from sparsify.flops import NonzeroCounts, WeightUse, flops, record_positions


class FlopsMonitor(L.Callback):
    """Counts the FLOPs of the run: training as 3 × inference FLOPs per example, at the
    density of the effective weights θ of each step (dense phases dense, sparse phases
    sparse), summed over all training examples and divided by dense training of the same
    length (``train_flops()``, 1.0 for dense training); and inference per example of the model
    as it is now (``inference_flops()``). Counted per example from the real model: forward
    hooks record, on the first training batch, where each conv and linear layer is applied
    (``sparsify.flops``). The non-zeros of θ are counted again, without waiting for the device,
    whenever they can have changed (``sparsify.flops.NonzeroCounts``): a masked weight when its
    mask changes, a soft-masked one (STR, CS) at every step, every weight every
    ``every_n_steps``; so a step costs exactly what its weights cost. Logs ``flops/inference``
    (per example) and ``flops/train_relative`` at the end of every epoch; ``sparsify fit``
    writes the values into ``summary.json`` and the W&B run summary. Resumes from its state.

    Args:
        every_n_steps: count the non-zeros of every θ every this many training batches, even
            where no mask changed (for weights zeroed in place by code outside sparsify).
    """

    def __init__(self, every_n_steps: int = 100):
        if every_n_steps < 1:
            raise ConfigError(f"every_n_steps={every_n_steps!r} is invalid: must be >= 1")
        self.every_n_steps = every_n_steps
        self.uses: list[WeightUse] | None = None  # known after the first training batch
        self.dense_per_example = 0.0
        self._recording = None
        self._counts: NonzeroCounts | None = None
        self._batch_size = 0
        self._batches = 0
        self._sparse_total: torch.Tensor | float = 0.0  # Σ examples · inference FLOPs
        self._current: torch.Tensor | None = None  # the inference FLOPs of the last steps,
        self._current_examples = 0  # and their examples, not yet in _sparse_total
        self.dense_total = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_size = extract_batch_size(batch)
        if self.uses is None:
            self._recording = record_positions(pl_module, self._batch_size)
            self._recorded = self._recording.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Every step is charged at the density after its optimizer step: the first batch of a
        # run, fresh or resumed, is the first time the hooks know where each weight is applied,
        # and counting every step the same way keeps a resumed run's total exact.
        if self._recording is not None:
            self._recording.__exit__(None, None, None)
            self._recording = None
            self.uses = self._recorded
            self.dense_per_example = flops(self.uses, dense=True)
            self._counts = NonzeroCounts(self.uses)
        current = self._counts.flops(full=self._batches % self.every_n_steps == 0)
        if current is not self._current:  # counted again: the steps before are settled
            self._sparse_total = self.sparse_total
            self._current, self._current_examples = current, 0
        self._current_examples += self._batch_size
        self.dense_total += self.dense_per_example * self._batch_size
        self._batches += 1

    @property
    def sparse_total(self) -> torch.Tensor | float:
        """Σ over the training examples so far of the inference FLOPs of their step. The steps
        since the last count are added as one product (integers in float64: exact below 2⁵³)."""
        if self._current is None:
            return self._sparse_total
        return self._sparse_total + self._current * self._current_examples

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.dense_total:  # before the first batch, or a model without conv or linear
            return
        metrics = {"flops/inference": flops(self.uses), "flops/train_relative": self.train_flops()}
        pl_module.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True)

    def inference_flops(self) -> tuple[float, float] | None:
        """``(FLOPs, dense FLOPs)`` per example of the model as it is now, or ``None`` before
        the first training batch."""
        if self.uses is None:
            return None
        return flops(self.uses), self.dense_per_example

    def train_flops(self) -> float | None:
        """The FLOPs of training so far divided by those of dense training on the same
        examples, or ``None`` before the first training batch."""
        if not self.dense_total:
            return None
        return float(self.sparse_total) / self.dense_total

    def state_dict(self) -> dict:
        return {
            "sparse_total": float(self.sparse_total),
            "dense_total": self.dense_total,
            "batches": self._batches,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._sparse_total = state_dict["sparse_total"]
        self._current, self._current_examples = None, 0
        self.dense_total = state_dict["dense_total"]
        self._batches = state_dict.get("batches", 0)
