"""Sign-In's sign flips: their measurement and the rescale schedule that causes them (Sign-In to
the Lottery, NeurIPS 2025; docs/pai.md, "Sign-In").

Sign-In trains the kept weights of a sparse mask as θ = m ⊙ w with inner scale β = m² − w² = 1
and re-splits θ every p epochs (``sparsify.reparam.rescale_``), so that weights keep crossing
zero. These functions watch that happen on the reparametrized layers of a model: the signs of
θ, the fraction of them that flipped since a reference, and the mean inner scale.
``SignInRescale`` is the schedule of the rescales and their reference signs, shared by the
Lightning callback ``sparsify.callbacks.SignIn`` and the ``Trainer`` adapter ``sparsify.hf.SignIn``.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsify.errors import ConfigError
from sparsify.reparam import check_beta, layer_masks, pointwise_factors, reparametrize, rescale_


def _kept_factors(module: nn.Module):
    """``(layer name, m, w, mask)`` for every reparametrized layer."""
    live = layer_masks(module)
    for name, m, w in pointwise_factors(module):
        layer = name.removesuffix(".weight") if name != "weight" else ""
        yield layer, m, w, live[layer]


@torch.no_grad()
def signs(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{layer: sign(m ⊙ w ⊙ mask)}`` as int8 (−1, 0, +1) of every reparametrized layer."""
    return {
        layer: torch.sign(m * w * mask).to(torch.int8)
        for layer, m, w, mask in _kept_factors(module)
    }


@torch.no_grad()
def sign_flips(module: nn.Module, reference: dict[str, torch.Tensor]) -> float:
    """The fraction of kept weights whose sign differs from ``reference`` (from ``signs``).

    Counted over the weights that are kept now and non-zero both now and in the reference, so
    a weight pruned or grown since (a changing mask, as in RiGL or AC/DC) is not a flip.
    """
    return flip_fraction(signs(module), reference)


def flip_fraction(now: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    """The fraction of entries non-zero in both ``now`` and ``reference`` (``{layer: signs}``)
    whose signs differ."""
    flipped = counted = 0
    for layer, sign in now.items():
        if layer not in reference:
            continue
        ref = reference[layer].to(sign.device)
        both = (sign != 0) & (ref != 0)
        flipped += int((both & (sign != ref)).sum())
        counted += int(both.sum())
    return flipped / counted if counted else 0.0


@torch.no_grad()
def inner_scale(module: nn.Module) -> float:
    """The mean of m² − w² over the kept weights of every reparametrized layer."""
    total, count = 0.0, 0
    for _, m, w, mask in _kept_factors(module):
        kept = mask != 0
        total += float((m[kept] ** 2 - w[kept] ** 2).sum())
        count += int(kept.sum())
    return total / count if count else 0.0


class SignInRescale:
    """Sign-In on the selected weights (``include`` / ``exclude`` as in
    ``sparsify.reparametrize``): ``reparametrize`` makes them θ = m ⊙ w with m² − w² = ``beta``;
    then when it re-splits them to m² − w² = ``beta`` (``sparsify.reparam.rescale_``): at the
    start of the first epoch, then at the start of every ``every_n_epochs``-th epoch, or, if
    given, every ``every_n_steps`` optimizer steps; and the signs of θ at the first and at the
    last rescale, against which flips are measured. Trainer-independent: the caller says when
    the weights are reparametrized and which epoch or step it is."""

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

    def reparametrize(self, module: nn.Module) -> None:
        """θ = m ⊙ w on the selected weights of ``module``, keeping any mask they have."""
        reparametrize(module, self.beta, self.include, self.exclude)

    def rescale(self, module: nn.Module, at: int) -> None:
        """Re-split every θ with m² − w² = β and take its signs as the new reference."""
        rescale_(module, self.beta)
        self.rescale_signs = signs(module)
        if self.init_signs is None:
            self.init_signs = self.rescale_signs
        self.last_rescale = at

    def epoch_start(self, module: nn.Module, epoch: int, step: int) -> None:
        """Rescale if epoch ``epoch`` (0-based) is due, or if nothing was rescaled yet."""
        if self.every_n_steps is not None:
            if self.init_signs is None:
                self.rescale(module, step)
            return
        due = epoch % self.every_n_epochs == 0 and epoch != self.last_rescale
        if self.init_signs is None or due:
            self.rescale(module, epoch)

    def step_end(self, module: nn.Module, step: int) -> None:
        """Rescale after optimizer step ``step`` if every ``every_n_steps`` steps makes it due."""
        if self.every_n_steps is not None and step % self.every_n_steps == 0:
            if step != self.last_rescale:
                self.rescale(module, step)

    def measure(self, module: nn.Module) -> dict[str, float]:
        return {
            "signin/flips_since_init": sign_flips(module, self.init_signs or {}),
            "signin/flips_since_rescale": sign_flips(module, self.rescale_signs or {}),
            "signin/inner_scale": inner_scale(module),
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
