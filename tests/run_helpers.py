"""Callbacks the tests add to real `sparsify fit` runs through --trainer.callbacks+=."""

from pathlib import Path

import lightning as L
import torch

# Overrides that make a recipe act within a short test run (RiGL updates every 5 steps, the
# ImageNet recipes fine-tune 1 epoch instead of 5); they apply to the recipe's last callback.
OVERRIDES = {
    "method/rigl": ["--trainer.callbacks.every_n_steps=5"],
    "method/rigl_signin": ["--trainer.callbacks.every_n_steps=5"],
    "method/rigl_signin_imagenet": ["--trainer.callbacks.every_n_steps=5"],
    "method/pilot_imagenet": ["--trainer.callbacks.finetune_epochs=1"],
    "method/spred_imagenet": ["--trainer.callbacks.finetune_epochs=1"],
    "method/str_imagenet": ["--trainer.callbacks.finetune_epochs=1"],
}

# The methods the resume test runs, each with its overrides.
RECIPES = {
    recipe: OVERRIDES.get(recipe, [])
    for recipe in ("method/pilot", "method/snip_signin", "method/gmp", "method/rigl", "method/cs")
}


class CrashInEpoch(L.Callback):
    """Raise in the middle of epoch ``epoch``, as a killed job would stop: the last checkpoint
    on disk is the end of the epoch before."""

    def __init__(self, epoch: int, batch: int = 3):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError("simulated crash")


class DumpState(L.Callback):
    """Each process saves its model state and the callbacks' states to ``rank<N>.pt``."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_end(self, trainer, pl_module):
        callbacks = {type(c).__name__: c.state_dict() for c in trainer.callbacks if c is not self}
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        path = Path(self.out_dir) / f"rank{trainer.global_rank}.pt"
        world_size = trainer.world_size
        torch.save({"model": state, "callbacks": callbacks, "world_size": world_size}, path)
