"""Every method recipe in configs/method trains under DDP on two CPU processes (gloo) to the
same model on both ranks: identical weights, masks and callback states, at or above the target
sparsity. The two processes start once and run every recipe in turn (ddp_recipes_worker.py)."""

import sys
from pathlib import Path

import torch

from helpers import run_two_ranks
from sparsify.app.cli import shipped_configs
from sparsify.app.compare import load_method

TESTS = Path(__file__).parent
WORKER = TESTS / "ddp_recipes_worker.py"
METHODS = [name for name in shipped_configs() if name.startswith("method/")]
# Recipes that prune nothing (no callback takes a target sparsity): the dense baselines, HAM
# alone, the weight-decay schedules of the first paper's experiments.
UNMASKED = {name for name in METHODS if load_method(name).family == "reference"}
TARGET = 0.9


def run_ranks(out_dir: Path, recipes: list[str]) -> None:
    """Start the two ranks of one DDP group, as torchrun would, and wait for both."""
    run_two_ranks([sys.executable, str(WORKER), str(out_dir), *recipes], timeout=1200)


def differences(recipe: str, rank0: dict, rank1: dict) -> list[str]:
    """What differs between the ranks, or is missing, for one recipe."""
    found = []
    masks = [k for k in rank0["model"] if k.endswith(".mask")]
    found += [
        f"{key} differs"
        for key in rank0["model"]
        if not torch.equal(rank0["model"][key], rank1["model"][key])
    ]
    if repr(rank0["callbacks"]) != repr(rank1["callbacks"]):
        found.append("callback states differ")
    if recipe in UNMASKED:
        return found
    if not masks:
        return [*found, "no mask"]
    kept = sum(int(rank0["model"][k].sum()) for k in masks)
    sparsity = 1 - kept / sum(rank0["model"][k].numel() for k in masks)
    if sparsity < TARGET - 2e-3:
        found.append(f"sparsity {sparsity:.4f} below the target {TARGET}")
    return found


def test_every_method_recipe_gives_the_same_model_on_both_ddp_ranks(tmp_path):
    run_ranks(tmp_path, METHODS)
    failures = {}
    for recipe in METHODS:
        folder = tmp_path / recipe.replace("/", "_")
        rank0, rank1 = (torch.load(folder / f"rank{r}.pt", weights_only=False) for r in (0, 1))
        assert rank0["world_size"] == rank1["world_size"] == 2, recipe
        found = differences(recipe, rank0, rank1)
        if found:
            failures[recipe] = found
    assert not failures, failures
