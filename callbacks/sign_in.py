"""Sign-In: train the kept weights as θ = m ⊙ w and reset the inner scale every p epochs."""

from __future__ import annotations

import lightning as L

from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.callbacks.state_key import argument_key
from sparsify.sign_flips import SignInRescale


class SignIn(SignInRescale, PortableCheckpoint):
    """Sign-In: the kept weights trained as θ = m ⊙ w, rescaled so that weights can change sign.

    Gadhikar, Jacobs, Zhou, Burkholz, "Sign-In to the Lottery", NeurIPS 2025 (docs/pai.md,
    "Sign-In"): the kept weights of the model's masks are trained as θ = m ⊙ w with inner scale β =
    m² − w² = ``beta``, whose flow dθ = −sqrt(4θ² + β²) ∇L keeps a non-zero step at θ = 0, so
    weights can change sign. Weight decay and gradient noise shrink β; every ``every_n_epochs``
    epochs (or, if given, ``every_n_steps`` optimizer steps) each θ is re-split so that m² − w² = β
    again, θ unchanged.

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

    Args:
        beta: the inner scale β = m² − w² the kept weights are split with and reset to.
        every_n_epochs: rescale at the start of every this many epochs.
        every_n_steps: rescale every this many optimizer steps instead; ``None``: by epochs.
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.reparametrize(pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_start(pl_module, trainer.current_epoch, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step_end(pl_module, trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log_dict(self.measure(pl_module), on_step=False, on_epoch=True, sync_dist=True)

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return argument_key(self, "include", "exclude")
