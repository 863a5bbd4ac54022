"""Training progress in the unit a callback is configured with."""

from __future__ import annotations

import lightning as L

from sparsify.schedules import UNITS, Unit, check_unit  # noqa: F401  (callbacks import them here)


def progress(trainer: L.Trainer, unit: Unit) -> float:
    """Optimizer steps taken (``step``), the index of the current epoch (``epoch``), or steps
    taken over the run's total steps (``fraction``)."""
    if unit == "step":
        return float(trainer.global_step)
    if unit == "epoch":
        return float(trainer.current_epoch)
    return trainer.global_step / max(1, int(trainer.estimated_stepping_batches))
