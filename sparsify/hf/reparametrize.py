"""``Reparametrize`` for Hugging Face's ``Trainer``: the adapter of the rule of that name."""

from __future__ import annotations

from sparsify import rules
from sparsify.errors import ConfigError
from sparsify.hf.adapter import RuleTrainerCallback


def refuse_built_optimizer(who: str, optimizer) -> None:
    """``who`` turns weights into m, w when the ``Trainer`` is built (``on_init_end``): an
    optimizer built before would hold the replaced weights."""
    if optimizer is not None:
        raise ConfigError(
            f"{who} is invalid with a Trainer given an optimizer: it replaces weights by m, w "
            "before the Trainer builds its optimizer; let the Trainer build it"
        )


class Reparametrize(rules.Reparametrize, RuleTrainerCallback):
    __doc__ = rules.Reparametrize.__doc__

    def on_init_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        refuse_built_optimizer(type(self).__name__, optimizer)
        super().on_init_end(args, state, control, model=model, **kwargs)
