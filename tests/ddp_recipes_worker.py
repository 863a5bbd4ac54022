"""Run by tests/test_ddp.py as both processes of one DDP group (the test sets LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as torchrun would): `python ddp_recipes_worker.py OUT_DIR
RECIPE...`. The process group is made once; every recipe is then a real `sparsify fit` run
with --trainer.strategy=ddp on two CPU devices, which joins that group, so the two processes
start only once for all recipes. Each rank saves its final state to OUT_DIR/<recipe>/rank<N>.pt
(run_helpers.DumpState)."""

import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from run_helpers import OVERRIDES

from sparsify.app.cli import main

SHORT_RUN = [
    "--trainer.strategy=ddp",
    "--trainer.devices=2",
    "--trainer.accelerator=cpu",
    "--trainer.max_epochs=4",
    "--trainer.limit_train_batches=4",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--wandb=false",
]


def fit(recipe: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    main(
        [
            "fit",
            "--config",
            recipe,
            *SHORT_RUN,
            f"--trainer.default_root_dir={out}",
            *OVERRIDES.get(recipe, []),  # for the recipe's last callback: before DumpState
            "--trainer.callbacks+=run_helpers.DumpState",
            f"--trainer.callbacks.out_dir={out}",
        ]
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    rank = int(os.environ["LOCAL_RANK"])
    # A short timeout: if one rank fails, the other stops waiting for it within a minute.
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    out_dir, recipes = Path(sys.argv[1]), sys.argv[2:]
    for recipe in recipes:
        start = time.perf_counter()
        fit(recipe, out_dir / recipe.replace("/", "_"))
        print(f"rank {rank}: {recipe} {time.perf_counter() - start:.1f} s", flush=True)
