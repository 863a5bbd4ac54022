"""Sign-In: train the kept weights as θ = m ⊙ w and reset the inner scale every p epochs."""

from __future__ import annotations

import lightning as L

from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.errors import ConfigError
from sparsify.reparam import check_beta, reparametrize, rescale_
from sparsify.sign_in import inner_scale, sign_flips, signs


class SignIn(PortableCheckpoint):
    """Sign-In (Sign-In to the Lottery, NeurIPS 2025; METHODS.md §4): the kept weights of the
    model's masks trained as θ = m ⊙ w with inner scale β = m² − w² = ``beta``, whose flow
    dθ = −sqrt(4θ² + β²) ∇L keeps a non-zero step at θ = 0, so weights can change sign. Weight
    decay and gradient noise shrink β; every ``every_n_epochs`` epochs (or, if given,
    ``every_n_steps`` optimizer steps) each θ is re-split so that m² − w² = β again, θ unchanged.

    ``setup`` reparametrizes the selected weights (keeping any mask they have) before the
    optimizer is built. The first rescale, at the start of the first epoch, comes after every
    ``on_train_start`` (so after ``PruneAtInit`` or ``RiGL`` set their masks, in whatever order
    the callbacks are listed) and records the initial signs. The mask may stay fixed (PaI) or
    change (RiGL, AC/DC): only the weights kept at the time are measured.

    Logged at the end of every epoch: ``signin/flips_since_init`` and
    ``signin/flips_since_rescale`` (fractions of the kept weights whose sign differs from the
    first / the last rescale) and ``signin/inner_scale`` (mean m² − w² over the kept weights).
    The rescale is deterministic, so every DDP rank does the same; the reference signs and the
    last rescale time are in the ``state_dict``, so a resumed run continues as it would have.
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

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        reparametrize(pl_module, self.beta, self.include, self.exclude)

    def rescale(self, pl_module: L.LightningModule, at: int) -> None:
        """Re-split every θ with m² − w² = β and take its signs as the new reference."""
        rescale_(pl_module, self.beta)
        self.rescale_signs = signs(pl_module)
        if self.init_signs is None:
            self.init_signs = self.rescale_signs
        self.last_rescale = at

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_steps is not None:
            if self.init_signs is None:
                self.rescale(pl_module, trainer.global_step)
            return
        epoch = trainer.current_epoch
        due = epoch % self.every_n_epochs == 0 and epoch != self.last_rescale
        if self.init_signs is None or due:
            self.rescale(pl_module, epoch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps is not None and step % self.every_n_steps == 0:
            if step != self.last_rescale:
                self.rescale(pl_module, step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log_dict(self.measure(pl_module), on_step=False, on_epoch=True, sync_dist=True)

    def measure(self, pl_module: L.LightningModule) -> dict[str, float]:
        return {
            "signin/flips_since_init": sign_flips(pl_module, self.init_signs or {}),
            "signin/flips_since_rescale": sign_flips(pl_module, self.rescale_signs or {}),
            "signin/inner_scale": inner_scale(pl_module),
        }

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return self._generate_state_key(include=self.include, exclude=self.exclude)

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
