"""Run by tests/test_fashion_mnist.py as both processes of one DDP group (the test sets
LOCAL_RANK, RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as torchrun would):
`python ddp_device_loader_worker.py DATA_DIR OUT_DIR`. Two epochs of a Lightning fit with
strategy="ddp" on two CPU devices over FashionMNISTDataModule's device loader; each rank saves
the ids of the images it trained on (pixel (0, 0) of each image, written by the test), epoch by
epoch, and the class of the loader Lightning ran, to OUT_DIR/rank<N>.pt."""

import sys

import lightning as L
import torch

from helpers import RecordBatches, trainer
from sparsify.datamodules import FashionMNISTDataModule
from sparsify.datamodules.fashion_mnist import MEAN, STD

SEED = 3


def image_ids(x, y):
    """The id the test wrote into pixel (0, 0) of each image, the normalization undone."""
    return ((x[:, 0, 0, 0] * STD[0] + MEAN[0]) * 255).round().long()


def main(data_dir: str, out_dir: str) -> None:
    L.seed_everything(SEED)
    datamodule = FashionMNISTDataModule(data_dir, val_size=8, batch_size=4)
    module = RecordBatches(image_ids)
    run = trainer(
        out_dir,
        [],
        max_epochs=2,
        strategy="ddp",
        devices=2,
        limit_val_batches=0,
        enable_checkpointing=False,
    )
    run.fit(module, datamodule)
    record = {
        "epochs": [torch.cat(ids).tolist() for ids in module.epochs],
        "loader": type(run.train_dataloader).__name__,
    }
    torch.save(record, f"{out_dir}/rank{run.global_rank}.pt")
    # Lightning leaves the gloo group up; its threads torn down at exit can abort the process.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
