"""The one metric ``TrainingModule`` updates at every batch."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class SampleMean(Metric):
    """A mean over the samples of an epoch: ``update(total, samples)`` adds a batch's sum
    (its mean loss × its size, its number of correct predictions) and its number of samples;
    ``compute()`` is Σ total / Σ samples. The mean loss over samples and the micro-averaged
    accuracy are both such means.

    Two in-place additions: about 13 µs a batch, against 36 µs for ``MulticlassAccuracy`` and
    20 µs for ``MeanMetric`` (one CPU thread), whose inputs are checked, broadcast and reduced
    at every batch. NaN is kept (a NaN loss makes the epoch's mean NaN).

    Args:
        sync_on_compute: add up the processes' states before ``compute()`` (torchmetrics').
    """

    full_state_update = False

    def __init__(self, sync_on_compute: bool = True):
        super().__init__(sync_on_compute=sync_on_compute)
        self.add_state("total", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("samples", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, total: torch.Tensor, samples: int) -> None:
        self.total += total
        self.samples += samples

    def compute(self) -> torch.Tensor:
        return self.total / self.samples
