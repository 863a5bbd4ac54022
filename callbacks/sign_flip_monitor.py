"""The fraction of weights that changed sign since training started, for any method."""

from __future__ import annotations

import lightning as L
import torch

from sparsify.reparam import prunable_layers
from sparsify.sign_flips import flip_fraction


@torch.no_grad()
def weight_signs(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{layer: sign(θ)}`` as int8 of every prunable layer's effective weight θ (masked,
    reparametrized or plain)."""
    return {
        name: torch.sign(layer.weight).to(torch.int8) for name, layer in prunable_layers(module)
    }


class SignFlipMonitor(L.Callback):
    """Log ``signs/flips_since_start`` at the end of every epoch: the fraction of weights,
    non-zero now and when the first epoch started, whose sign differs (``flip_fraction``).

    The same measure with and without Sign-In (whose own ``signin/flips_since_init`` counts
    from its first rescale, which is the same moment and leaves θ unchanged), so a baseline's
    flips can be put beside Sign-In's (Sign-In to the Lottery, NeurIPS 2025; docs/pai.md,
    "Sign-In").
    Weights pruned at initialization are 0 and not counted; a mask that changes (RiGL,
    AC/DC) counts only the weights kept at both times. The starting signs are in the
    ``state_dict``, so a resumed run measures against the same start.
    """

    def __init__(self):
        self.start_signs: dict[str, torch.Tensor] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start_signs is None:
            self.start_signs = weight_signs(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        flips = flip_fraction(weight_signs(pl_module), self.start_signs or {})
        pl_module.log(
            "signs/flips_since_start", flips, on_step=False, on_epoch=True, sync_dist=True
        )

    def state_dict(self) -> dict:
        signs = self.start_signs
        return {"start_signs": None if signs is None else {k: v.cpu() for k, v in signs.items()}}

    def load_state_dict(self, state_dict: dict) -> None:
        self.start_signs = state_dict["start_signs"]
