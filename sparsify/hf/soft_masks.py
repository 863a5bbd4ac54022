"""Soft masks under Hugging Face's ``Trainer``: the adapters of ``sparsify.rules.soft_threshold``
(STR) and ``sparsify.rules.continuous_sparsification`` (CS). They install their soft masks when
the ``Trainer`` is built (``on_init_end``), before it builds its optimizer, so the optimizer
sees the thresholds and scores."""

from __future__ import annotations

from sparsify import rules
from sparsify.errors import ConfigError
from sparsify.hf.adapter import RuleTrainerCallback


class SoftThresholdReparametrization(rules.SoftThresholdReparametrization, RuleTrainerCallback):
    __doc__ = rules.SoftThresholdReparametrization.__doc__


class ContinuousSparsification(rules.ContinuousSparsification, RuleTrainerCallback):
    __doc__ = rules.ContinuousSparsification.__doc__

    def on_init_end(self, args, state, control, model=None, **kwargs):
        self.check_epochs(whole_epochs(args), "num_train_epochs")
        super().on_init_end(args, state, control, model=model, **kwargs)

    def on_train_begin(self, args, state, control, **kwargs):
        if self.fold_scale and args.world_size > 1:
            raise ConfigError(
                "fold_scale=True is invalid in sparsify.hf.ContinuousSparsification with "
                f"{args.world_size} processes: the ticket removes the scores from the model, "
                "which the Trainer's DistributedDataParallel cannot follow; give "
                "fold_scale=False"
            )
        super().on_train_begin(args, state, control, **kwargs)


def whole_epochs(args) -> int:
    """The ``Trainer``'s number of epochs, where training is bounded by a whole number of them
    (the temperature schedule and the rounds are laid out in epochs)."""
    if args.max_steps > 0:
        raise ConfigError(
            f"max_steps={args.max_steps} is invalid for ContinuousSparsification: the "
            "temperature schedule needs a fixed number of epochs; give num_train_epochs"
        )
    epochs = args.num_train_epochs
    if epochs != int(epochs):
        raise ConfigError(
            f"num_train_epochs={epochs} is invalid for ContinuousSparsification: the rounds "
            "need a whole number of epochs"
        )
    return int(epochs)
