"""Lightning callbacks that add a sparsification method to any LightningModule
(import: ``sparsify.callbacks``)."""

from sparsify.callbacks.prune_at_end import PruneAtEnd
from sparsify.callbacks.random_state import RandomStateCheckpoint
from sparsify.callbacks.reparametrize import Reparametrize
from sparsify.callbacks.sparsity_monitor import SparsityMonitor
from sparsify.callbacks.weight_decay import WeightDecaySchedule, WeightDecaySwitchOff

__all__ = [
    "PruneAtEnd",
    "RandomStateCheckpoint",
    "Reparametrize",
    "SparsityMonitor",
    "WeightDecaySchedule",
    "WeightDecaySwitchOff",
]
