"""One training across two "nodes": two torchrun agents on localhost (``--nnodes 2``, one CPU
process each, gloo), as on a cluster without SLURM. Lightning reads torchrun's environment;
the masks, weights and callback states end identical on both ranks."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from helpers import free_port

TESTS = Path(__file__).parent


def test_torchrun_two_nodes_train_one_model_with_identical_masks(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(TESTS), "PYTHONWARNINGS": "ignore"}
    env["OMP_NUM_THREADS"] = "1"
    port = free_port()
    fit = ["-m", "sparsify", "fit", "--config", "method/snip_signin"]
    fit += ["--trainer.strategy=ddp", "--trainer.accelerator=cpu", "--trainer.devices=1"]
    fit += ["--trainer.num_nodes=2", "--trainer.max_epochs=2", "--trainer.limit_train_batches=6"]
    fit += ["--trainer.limit_val_batches=2", "--wandb=false", "--trainer.enable_progress_bar=false"]
    fit += [f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_model_summary=false"]
    fit += ["--trainer.callbacks+=run_helpers.DumpState", f"--trainer.callbacks.out_dir={tmp_path}"]
    nodes = []
    for node_rank in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2"]
        command += ["--nproc_per_node=1", f"--node_rank={node_rank}"]
        command += ["--master_addr=127.0.0.1", f"--master_port={port}", *fit]
        log = open(tmp_path / f"node{node_rank}.log", "w")  # noqa: SIM115
        nodes.append((subprocess.Popen(command, env=env, stdout=log, stderr=log), log))
    for process, log in nodes:
        process.wait(timeout=600)
        log.close()
    for node_rank, (process, _) in enumerate(nodes):
        assert process.returncode == 0, (tmp_path / f"node{node_rank}.log").read_text()[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert rank0["world_size"] == rank1["world_size"] == 2
    masks = [key for key in rank0["model"] if key.endswith(".mask")]
    assert masks and any(not rank0["model"][key].all() for key in masks)
    for key, value in rank0["model"].items():
        assert torch.equal(value, rank1["model"][key]), key
    assert repr(rank0["callbacks"]) == repr(rank1["callbacks"])
