"""The methods' rules, free of any training framework (``sparsify.rules.base`` gives the
protocol): each owns its method's state and decisions; ``sparsify.callbacks`` (Lightning) and
``sparsify.hf`` (Hugging Face's ``Trainer``) adapt them with the same names and arguments."""

from sparsify.rules.acdc import ACDC
from sparsify.rules.base import Progress, Rule, Run
from sparsify.rules.continuous_sparsification import ContinuousSparsification
from sparsify.rules.ham_step import HAMStep
from sparsify.rules.l1 import L1Penalty
from sparsify.rules.magnitude_pruning import MagnitudePruning
from sparsify.rules.pilot import PILoT
from sparsify.rules.prune_at_end import PruneAtEnd
from sparsify.rules.prune_at_init import PruneAtInit
from sparsify.rules.reparametrize import Reparametrize
from sparsify.rules.rigl import RiGL
from sparsify.rules.sign_in import SignIn
from sparsify.rules.soft_threshold import SoftThresholdReparametrization
from sparsify.rules.weight_decay import (
    WeightDecayController,
    WeightDecaySchedule,
    WeightDecaySwitchOff,
)

__all__ = [
    "ACDC",
    "HAMStep",
    "L1Penalty",
    "MagnitudePruning",
    "PILoT",
    "Progress",
    "PruneAtEnd",
    "Reparametrize",
    "ContinuousSparsification",
    "Progress",
    "PruneAtInit",
    "RiGL",
    "SoftThresholdReparametrization",
    "Rule",
    "Run",
    "SignIn",
    "WeightDecayController",
    "WeightDecaySchedule",
    "WeightDecaySwitchOff",
]
