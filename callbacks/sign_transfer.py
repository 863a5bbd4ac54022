"""Start a sparse run from another network's signs or magnitudes ("signs are sufficient")."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from sparsify.callbacks.portable import PortableCheckpoint
from sparsify.checkpoint import read_state_dict
from sparsify.errors import ConfigError
from sparsify.masks import (
    Scope,
    check_scope,
    check_sparsity,
    select_mask,
    set_masks,
    sparsity_report,
)
from sparsify.reparam import LayerSelection, add_masks
from sparsify.state import effective_weights, saved_masks
from sparsify.transfer import check_keep
from sparsify.transfer import transfer_weights as transfer


class SignTransfer(PortableCheckpoint):
    """Before the first optimizer step, give the model a mask and the signs and/or magnitudes of
    the weights θ_src in ``checkpoint`` (Sign-In to the Lottery, NeurIPS 2025;
    docs/pai.md, "Sign transfer"):

    - ``keep="signs"``: sign(θ_src) with this run's random initial magnitudes;
    - ``keep="magnitudes"``: |θ_src| with this run's random initial signs;
    - ``keep="both"``: θ_src itself; ``keep="none"``: this run's initialization (the control).

    Only prunable (conv / linear) weights are transferred; biases and norm parameters keep this
    run's initialization. Use a seed other than the source run's, or the "random" half is the
    source's own initialization.

    The mask: ``mask_from="checkpoint"`` takes it from ``checkpoint``, any other path from that
    checkpoint; with ``sparsity`` it is the checkpoint's largest |θ| at ``sparsity`` (``scope``
    ``"global"`` or ``"layer"``), without it the masks stored there. ``mask_from="current"``
    keeps the run's own masks (e.g. from a ``PruneAtInit`` listed before this callback).

    The files are read with ``torch.load(weights_only=True)``; one that needs full unpickling,
    which can run code stored in it, is refused unless ``trusted=True`` (only for files you
    trust: ``sparsify.checkpoint.read_checkpoint``).

    Every rank reads the same files and its own initialization, which DDP has synchronized, so
    every rank sets the same weights without a broadcast. ``done`` is in the ``state_dict``: a
    resumed run does not transfer again.

    Args:
        checkpoint: the checkpoint of the source run θ_src.
        keep: ``"signs"``, ``"magnitudes"``, ``"both"`` or ``"none"``.
        mask_from: ``"checkpoint"`` (the source's), the path of another checkpoint, or
            ``"current"`` (the run's own masks).
        sparsity: take the mask as the largest |θ| of ``mask_from`` at this sparsity; ``None``:
            the masks stored there.
        scope: ``"global"`` or ``"layer"``, for ``sparsity``.
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
        trusted: allow full unpickling of a checkpoint that needs it (only for trusted files).
    """

    def __init__(
        self,
        checkpoint: str,
        keep: str = "signs",
        mask_from: str = "checkpoint",
        sparsity: float | None = None,
        scope: Scope = "global",
        include: list | None = None,
        exclude: list | None = None,
        trusted: bool = False,
    ):
        self.keep = check_keep(keep)
        self.checkpoint = _existing(checkpoint, "checkpoint")
        self.mask_from = mask_from
        if mask_from not in ("checkpoint", "current"):
            self.mask_from = _existing(mask_from, "mask_from")
        self.sparsity = None if sparsity is None else check_sparsity(sparsity)
        self.scope = check_scope(scope)
        self.include, self.exclude = include, exclude
        self.trusted = bool(trusted)
        self.done = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        add_masks(pl_module, self.include, self.exclude)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.done:
            return
        selection = LayerSelection.of(pl_module, self.include, self.exclude)
        layers = list(selection.names)
        source = _weights(self.read(self.checkpoint, "checkpoint"), layers, "checkpoint")
        if self.mask_from != "current":
            set_masks(pl_module, self.masks(layers, source))
        transfer(pl_module, source, self.keep, selection)
        self.done = True
        sparsity = sparsity_report(pl_module, selection)["global"]
        rank_zero_info(
            f"SignTransfer: {self.keep} of {self.checkpoint}, mask from {self.mask_from}, "
            f"sparsity {sparsity:.4f}"
        )

    def read(self, path: str, argument: str) -> dict:
        return read_state_dict(path, argument, trusted=self.trusted, trust_flag="trusted=True")

    def masks(self, layers: list[str], source: dict) -> dict:
        """The masks of ``layers`` named by ``mask_from`` and ``sparsity``."""
        path = self.checkpoint if self.mask_from == "checkpoint" else self.mask_from
        state = self.read(path, "checkpoint" if path == self.checkpoint else "mask_from")
        weights = source if path == self.checkpoint else _weights(state, layers, "mask_from")
        if self.sparsity is not None:
            scores = {name: weights[name].abs() for name in layers}
            return select_mask(scores, weights, self.sparsity, self.scope)
        masks = saved_masks(state)
        if not masks:
            raise ConfigError(
                f"mask_from={self.mask_from!r} is invalid without sparsity: {path} holds no "
                "masks; give sparsity= to take its largest weights"
            )
        return {name: masks[name] for name in layers if name in masks}

    @property
    def state_key(self) -> str:
        """Built from the arguments, so that two instances can be used side by side."""
        return self._generate_state_key(
            checkpoint=str(self.checkpoint), include=self.include, exclude=self.exclude
        )

    def state_dict(self) -> dict:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict) -> None:
        self.done = state_dict["done"]


def _weights(state_dict: dict, layers: list[str], name: str) -> dict:
    weights = effective_weights(state_dict)
    missing = [layer for layer in layers if layer not in weights]
    if missing:
        raise ConfigError(f"{name} is invalid: its checkpoint lacks the layers {missing}")
    return {layer: weights[layer] for layer in layers}


def _existing(path: str, name: str) -> str:
    if not Path(path).is_file():
        raise ConfigError(f"{name}={path!r} is invalid: no such file")
    return str(path)
