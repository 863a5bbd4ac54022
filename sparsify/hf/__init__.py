"""sparsify for users of Hugging Face's ``Trainer``: ``transformers.TrainerCallback`` adapters of
the plain-PyTorch core, without Lightning (docs/hf.md). Needs ``pip install "sparsify[hf]"``.

- ``MagnitudePruning``: GMP, the rule ``sparsify.rules.MagnitudePruning`` (as the Lightning
  callback);
- ``PruneAtEnd``: one-shot magnitude pruning when training ends, or before the last
  ``finetune_epochs`` epochs, the rule ``sparsify.rules.PruneAtEnd``;
- ``ACDC``, ``RiGL``: the rules ``sparsify.rules.ACDC`` and ``sparsify.rules.RiGL``, as the
  Lightning callbacks (RiGL's mask update replaces the optimizer step of its batch,
  ``on_pre_optimizer_step``);
- ``WeightDecaySwitchOff``: weight decay until ``at``, then 0 (``sparsify.schedules.switch_off``);
- ``PILoT``: the adaptive α_t on exactly the m, w of θ = m ⊙ w, the rule
  ``sparsify.rules.PILoT``, once per epoch;
- ``SignIn``: θ = m ⊙ w on the kept weights, re-split every p epochs (``sparsify.rules.SignIn``);
- ``Reparametrize``: θ = m ⊙ w on every prunable weight when the ``Trainer`` is built;
- ``L1Penalty``: the gradient of λ‖θ‖₁ or λ‖m‖₁ added before every optimizer step;
- ``HAMStep``: the HAM step of ``sparsify.optim.HAM`` after every optimizer step.
- ``PruneAtInit``, ``SoftThresholdReparametrization``, ``ContinuousSparsification``: the rules of
  ``sparsify.rules`` (``hf.prune_at_init``, ``hf.soft_masks``), as the Lightning callbacks.

What differs from Lightning is only where things are read: progress from ``TrainerState``
(``global_step / max_steps``, ``epoch``), the optimizer and the learning-rate scheduler from the
callback arguments, and metrics from what the ``Trainer`` logs (``on_log``). The ``Trainer``
builds its optimizer when ``train()`` starts, so anything that replaces a weight by m, w
(``SignIn``, ``Reparametrize``, or ``sparsify.reparametrize`` called by you) must come before
that: ``SignIn`` and ``Reparametrize`` do it in ``on_init_end``, when the ``Trainer`` is
constructed. Resuming a ``Trainer`` run with these adapters from a checkpoint is not supported:
their state is not saved with it.
"""

from __future__ import annotations

from sparsify import rules
from sparsify.hf.adapter import RuleTrainerCallback
from sparsify.hf.ham_step import HAMStep  # noqa: F401
from sparsify.hf.l1 import L1Penalty  # noqa: F401
from sparsify.hf.pilot import PILoT  # noqa: F401
from sparsify.hf.prune_at_init import PruneAtInit  # noqa: F401
from sparsify.hf.reparametrize import Reparametrize  # noqa: F401
from sparsify.hf.sign_in import SignIn  # noqa: F401
from sparsify.hf.soft_masks import (
    ContinuousSparsification,  # noqa: F401
    SoftThresholdReparametrization,  # noqa: F401
)


class WeightDecaySwitchOff(rules.WeightDecaySwitchOff, RuleTrainerCallback):
    __doc__ = rules.WeightDecaySwitchOff.__doc__


class WeightDecaySchedule(rules.WeightDecaySchedule, RuleTrainerCallback):
    __doc__ = rules.WeightDecaySchedule.__doc__


class MagnitudePruning(rules.MagnitudePruning, RuleTrainerCallback):
    __doc__ = rules.MagnitudePruning.__doc__


class PruneAtEnd(rules.PruneAtEnd, RuleTrainerCallback):
    __doc__ = rules.PruneAtEnd.__doc__


class ACDC(rules.ACDC, RuleTrainerCallback):
    __doc__ = rules.ACDC.__doc__


class RiGL(rules.RiGL, RuleTrainerCallback):
    __doc__ = rules.RiGL.__doc__
