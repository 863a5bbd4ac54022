"""Two CPU processes (DDP, gloo) train each method to the same model: identical weights, masks
and callback states on both ranks, at the target sparsity."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from run_helpers import RECIPES

TESTS = Path(__file__).parent


def ddp_fit(recipe, root, overrides):
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable,
        "-m",
        "sparsify",
        "fit",
        "--config",
        recipe,
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--trainer.max_epochs=4",
        "--trainer.limit_train_batches=12",
        "--wandb=false",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *overrides,  # they apply to the recipe's last callback: before DumpState is added
        "--trainer.callbacks+=run_helpers.DumpState",
        f"--trainer.callbacks.out_dir={root}",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(root / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


@pytest.mark.parametrize("recipe", RECIPES)
def test_both_ranks_end_with_the_same_model_and_method_state(recipe, tmp_path):
    rank0, rank1 = ddp_fit(recipe, tmp_path, RECIPES[recipe])
    assert rank0["world_size"] == rank1["world_size"] == 2
    masks = [k for k in rank0["model"] if k.endswith(".mask")]
    assert masks, "the recipe left no mask"
    for key, value in rank0["model"].items():
        assert torch.equal(value, rank1["model"][key]), key
    assert repr(rank0["callbacks"]) == repr(rank1["callbacks"])
    kept = sum(int(rank0["model"][k].sum()) for k in masks)
    total = sum(rank0["model"][k].numel() for k in masks)
    assert 1 - kept / total == pytest.approx(0.9, abs=2e-3)
