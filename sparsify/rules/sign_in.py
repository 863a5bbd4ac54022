"""Sign-In: train the kept weights as θ = m ⊙ w and reset the inner scale every p epochs (Sign-In
to the Lottery, NeurIPS 2025; docs/pai.md, "Sign-In")."""

from __future__ import annotations

from torch import nn

from sparsify.errors import ConfigError
from sparsify.reparam import check_beta, reparametrize, rescale_
from sparsify.rules.base import LayerRule, Run
from sparsify.sign_flips import inner_scale, sign_flips, signs


class SignIn(LayerRule):
    """Sign-In: the kept weights trained as θ = m ⊙ w, rescaled so that weights can change sign.

    Gadhikar, Jacobs, Zhou, Burkholz, "Sign-In to the Lottery", NeurIPS 2025 (docs/pai.md,
    "Sign-In"): the kept weights of the model's masks are trained as θ = m ⊙ w with inner scale β =
    m² − w² = ``beta``, whose flow dθ = −sqrt(4θ² + β²) ∇L keeps a non-zero step at θ = 0, so
    weights can change sign. Weight decay and gradient noise shrink β; every ``every_n_epochs``
    epochs (or, if given, ``every_n_steps`` optimizer steps) each θ is re-split so that m² − w² = β
    again, θ unchanged (``sparsify.reparam.rescale_``).

    The selected weights are reparametrized (keeping any mask they have) before the optimizer is
    built. The first rescale, at the start of the first epoch, comes after every method has set
    its masks when training starts (``PruneAtInit``, ``RiGL``, in whatever order they are listed)
    and records the initial signs. The mask may stay fixed (PaI) or change (RiGL, AC/DC): only the
    weights kept at the time are measured.

    Logged at the end of every epoch: ``signin/flips_since_init`` and
    ``signin/flips_since_rescale`` (fractions of the kept weights whose sign differs from the
    first / the last rescale) and ``signin/inner_scale`` (mean m² − w² over the kept weights).
    The rescale is deterministic, so every DDP rank does the same; the reference signs and the
    last rescale time are in the ``state_dict``, so a resumed run continues as it would have.

    Args:
        beta: the inner scale β = m² − w² the kept weights are split with and reset to.
        every_n_epochs: rescale at the start of every this many epochs.
        every_n_steps: rescale every this many optimizer steps instead; ``None``: by epochs.
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
    """

    def __init__(
        self,
        beta: float = 1.0,
        every_n_epochs: int = 1,
        every_n_steps: int | None = None,
        include: list | None = None,
        exclude: list | None = None,
    ):
        check_beta(beta)
        for name, value in (("every_n_epochs", every_n_epochs), ("every_n_steps", every_n_steps)):
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ConfigError(f"{name}={value!r} is invalid: must be an integer >= 1")
        self.beta = float(beta)
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.include, self.exclude = include, exclude
        self.init_signs: dict | None = None
        self.rescale_signs: dict | None = None
        self.last_rescale: int | None = None

    def prepare(self, model: nn.Module) -> None:
        """θ = m ⊙ w on the selected weights, keeping any mask they have."""
        reparametrize(model, self.beta, self.layers(model))

    def rescale(self, model: nn.Module, at: int) -> None:
        """Re-split every θ with m² − w² = β and take its signs as the new reference."""
        rescale_(model, self.beta)
        self.rescale_signs = signs(model)
        if self.init_signs is None:
            self.init_signs = self.rescale_signs
        self.last_rescale = at

    def epoch_start(self, run: Run) -> None:
        """Rescale if the epoch is due, or if nothing was rescaled yet."""
        if self.every_n_steps is not None:
            if self.init_signs is None:
                self.rescale(run.model, run.progress.step)
            return
        epoch = run.progress.epoch
        due = epoch % self.every_n_epochs == 0 and epoch != self.last_rescale
        if self.init_signs is None or due:
            self.rescale(run.model, epoch)

    def after_step(self, run: Run) -> None:
        """Rescale after the optimizer step if every ``every_n_steps`` steps makes it due."""
        step = run.progress.step
        if self.every_n_steps is not None and step % self.every_n_steps == 0:
            if step != self.last_rescale:
                self.rescale(run.model, step)

    def epoch_end(self, run: Run) -> dict[str, float]:
        return self.measure(run.model)

    def measure(self, model: nn.Module) -> dict[str, float]:
        return {
            "signin/flips_since_init": sign_flips(model, self.init_signs or {}),
            "signin/flips_since_rescale": sign_flips(model, self.rescale_signs or {}),
            "signin/inner_scale": inner_scale(model),
        }

    def state_dict(self) -> dict:
        return {
            "init_signs": _on_cpu(self.init_signs),
            "rescale_signs": _on_cpu(self.rescale_signs),
            "last_rescale": self.last_rescale,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.init_signs = state_dict["init_signs"]
        self.rescale_signs = state_dict["rescale_signs"]
        self.last_rescale = state_dict["last_rescale"]


def _on_cpu(tensors: dict | None) -> dict | None:
    return None if tensors is None else {name: t.cpu() for name, t in tensors.items()}
