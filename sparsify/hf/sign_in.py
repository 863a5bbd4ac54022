"""``SignIn`` for Hugging Face's ``Trainer``: the adapter of ``sparsify.rules.SignIn``."""

from __future__ import annotations

from sparsify import rules
from sparsify.hf.adapter import RuleTrainerCallback
from sparsify.hf.reparametrize import refuse_built_optimizer


class SignIn(rules.SignIn, RuleTrainerCallback):
    __doc__ = rules.SignIn.__doc__ + (
        """
    Under the ``Trainer`` the weights become m, w when it is constructed (``on_init_end``), before
    it builds its optimizer; a ``Trainer`` given an optimizer is refused. ``measurements`` holds
    the values of every epoch (the logged keys above).
    """
    )

    def on_init_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        refuse_built_optimizer(type(self).__name__, optimizer)
        super().on_init_end(args, state, control, model=model, **kwargs)

    @property
    def measurements(self) -> list[dict[str, float]]:
        """The flips and the inner scale measured at the end of each epoch."""
        return [
            {name: value for name, value in logged.items() if name.startswith("signin/")}
            for logged in self.logged
            if "signin/inner_scale" in logged
        ]
