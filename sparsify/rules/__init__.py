"""The methods' rules, free of any training framework (``sparsify.rules.base`` gives the
protocol): each owns its method's state and decisions; ``sparsify.callbacks`` (Lightning) and
``sparsify.hf`` (Hugging Face's ``Trainer``) adapt them with the same names and arguments."""

from sparsify.rules.acdc import ACDC
from sparsify.rules.base import Progress, Rule, Run
from sparsify.rules.magnitude_pruning import MagnitudePruning
from sparsify.rules.prune_at_end import PruneAtEnd
from sparsify.rules.rigl import RiGL
from sparsify.rules.weight_decay import (
    WeightDecayController,
    WeightDecaySchedule,
    WeightDecaySwitchOff,
)

__all__ = [
    "ACDC",
    "MagnitudePruning",
    "Progress",
    "PruneAtEnd",
    "RiGL",
    "Rule",
    "Run",
    "WeightDecayController",
    "WeightDecaySchedule",
    "WeightDecaySwitchOff",
]
