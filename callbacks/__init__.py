"""Lightning callbacks that add a sparsification method to any LightningModule
(import: ``sparsify.callbacks``)."""

from sparsify.callbacks.acdc import ACDC
from sparsify.callbacks.continuous_sparsification import ContinuousSparsification
from sparsify.callbacks.flops_monitor import FlopsMonitor
from sparsify.callbacks.ham_step import HAMStep
from sparsify.callbacks.l1 import L1Penalty
from sparsify.callbacks.magnitude_pruning import MagnitudePruning
from sparsify.callbacks.one_shot_curve import OneShotPruningCurve
from sparsify.callbacks.pilot import PILoT
from sparsify.callbacks.prune_at_end import PruneAtEnd
from sparsify.callbacks.prune_at_init import PruneAtInit
from sparsify.callbacks.random_state import RandomStateCheckpoint
from sparsify.callbacks.reparametrize import Reparametrize
from sparsify.callbacks.rigl import RiGL
from sparsify.callbacks.sign_flip_monitor import SignFlipMonitor
from sparsify.callbacks.sign_in import SignIn
from sparsify.callbacks.sign_transfer import SignTransfer
from sparsify.callbacks.soft_threshold import SoftThresholdReparametrization
from sparsify.callbacks.sparsity_monitor import SparsityMonitor
from sparsify.callbacks.weight_decay import WeightDecaySchedule, WeightDecaySwitchOff

__all__ = [
    "ACDC",
    "ContinuousSparsification",
    "FlopsMonitor",
    "HAMStep",
    "L1Penalty",
    "MagnitudePruning",
    "OneShotPruningCurve",
    "PILoT",
    "PruneAtEnd",
    "PruneAtInit",
    "RandomStateCheckpoint",
    "Reparametrize",
    "RiGL",
    "SignFlipMonitor",
    "SignIn",
    "SignTransfer",
    "SoftThresholdReparametrization",
    "SparsityMonitor",
    "WeightDecaySchedule",
    "WeightDecaySwitchOff",
]
