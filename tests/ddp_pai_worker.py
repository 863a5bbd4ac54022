"""Run by tests/test_pai_ddp.py: `python ddp_pai_worker.py OUT_DIR`. Lightning's DDP launcher
starts this script again for rank 1. Each rank has its own seed and its own data, so masks
that were not broadcast from rank 0 would differ; each rank saves the masks of every score, and
the masks and weights after a shuffled and re-initialized SNIP mask (``sanity``)."""

import os
import sys

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers import QUIET, UserModule, blobs
from sparsify.callbacks.prune_at_init import PruneAtInit
from sparsify.pai import pai_masks
from sparsify.reparam import layer_masks

SCORES = ("random", "snip", "grasp")


class SaveMasks(L.Callback):
    """Keeps this rank's masks when training starts, before any forward pass could sync them."""

    def __init__(self, score, saved):
        self.score, self.saved = score, saved

    def on_train_start(self, trainer, pl_module):
        self.saved[self.score] = {k: v.clone() for k, v in layer_masks(pl_module).items()}
        weights = {k: p.detach().clone() for k, p in pl_module.named_parameters()}
        self.saved[f"{self.score}_weights"] = weights


def main(out_dir):
    rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.set_num_threads(1)
    L.seed_everything(100 + rank)
    x, y = blobs(64, seed=rank)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    # What each rank would choose on its own, without the broadcast.
    saved = {f"local_{s}": pai_masks(UserModule(), 0.8, s, dataloader=loader) for s in SCORES}
    callbacks = []
    for score in SCORES:
        # GraSP takes 5 examples of each class: a rank's 32 of the 64 blobs hold that many.
        pruner = PruneAtInit(0.8, score=score, num_batches=2, samples_per_class=5)
        callbacks += [pruner, SaveMasks(score, saved)]
    # The sanity checks draw at random: rank 0's draws, broadcast (another target, another key).
    sanity = PruneAtInit(0.7, score="snip", num_batches=2, shuffle=True, reinitialize=True)
    callbacks += [sanity, SaveMasks("sanity", saved)]
    trainer = L.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_steps=1,
        callbacks=callbacks,
        **QUIET,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
    )
    trainer.fit(UserModule(), loader)
    torch.save(saved, os.path.join(out_dir, f"masks_rank{trainer.global_rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
