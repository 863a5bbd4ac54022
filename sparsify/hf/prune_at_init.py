"""Pruning at initialization under Hugging Face's ``Trainer``: the adapter of
``sparsify.rules.prune_at_init``, scoring on the ``Trainer``'s training batches with the model's
own loss, ``model(**batch)["loss"]``."""

from __future__ import annotations

from sparsify import rules
from sparsify.errors import ConfigError
from sparsify.hf.adapter import RuleTrainerCallback


class PruneAtInit(rules.PruneAtInit, RuleTrainerCallback):
    __doc__ = rules.PruneAtInit.__doc__

    def on_init_end(self, args, state, control, model=None, **kwargs):
        self.check_trainer_options()
        super().on_init_end(args, state, control, model=model, **kwargs)

    def check_trainer_options(self) -> None:
        """What a ``Trainer``'s dict batches and the model's own loss cannot give."""
        where = "in sparsify.hf.PruneAtInit"
        if self.loss_fn is not None:
            raise ConfigError(
                f"loss_fn={self.loss_fn!r} is invalid {where}: the scores use the model's own "
                "loss, model(**batch)['loss']; leave loss_fn out"
            )
        if self.score == "synflow":
            raise ConfigError(
                f"score='synflow' is invalid {where}: its all-ones input needs a model that "
                "maps a tensor to a tensor; call sparsify.prune_at_init(model, sparsity, "
                "score='synflow', input_shape=...) before building the Trainer"
            )
        if self.score == "grasp" and self.temperature != 1:
            raise ConfigError(
                f"temperature={self.temperature!r} is invalid {where} with score='grasp': the "
                "model's own loss cannot divide its logits by a temperature; give temperature=1"
            )
        if self.score == "grasp" and self.samples_per_class is not None:
            raise ConfigError(
                f"samples_per_class={self.samples_per_class!r} is invalid {where}: the "
                "Trainer's batches are dicts without a class to balance by; give "
                "samples_per_class=None (the first num_batches batches)"
            )
