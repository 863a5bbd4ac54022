"""Training progress in the unit a callback is configured with: ``sparsify.rules.Progress``,
the one progress measure of every method, read from a Lightning trainer."""

from __future__ import annotations

import lightning as L

from sparsify.callbacks.rule_callback import lightning_progress
from sparsify.schedules import UNITS, Unit, check_unit  # noqa: F401  (callbacks import them here)


def progress(trainer: L.Trainer, unit: Unit) -> float:
    """Optimizer steps taken (``step``), the index of the current epoch (``epoch``), or steps
    taken over the run's total steps (``fraction``)."""
    return lightning_progress(trainer).at(unit)
