import os
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("ddp_pai_worker.py")


def test_pai_masks_are_identical_on_two_ddp_processes(tmp_path):
    """Two CPU processes (gloo), each with its own seed and data: the masks PruneAtInit sets
    are rank 0's on both, for the random and every data-dependent score, and so are a shuffled
    mask and re-initialized weights."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path)],
        cwd=WORKER.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "masks_rank0.pt")
    rank1 = torch.load(tmp_path / "masks_rank1.pt")
    for score in ("random", "snip", "grasp"):
        local0, local1 = rank0[f"local_{score}"], rank1[f"local_{score}"]
        assert any(not torch.equal(local0[k], local1[k]) for k in local0), score
        assert rank0[score].keys() == local0.keys()
        for name in rank0[score]:
            assert torch.equal(rank0[score][name], rank1[score][name]), (score, name)
        assert sum(int(m.sum()) for m in rank0[score].values()) == round(0.2 * (256 + 96))
    # A shuffled mask and re-initialized weights: rank 0's draws on both ranks.
    assert rank0["sanity"].keys() == rank0["snip"].keys()
    for name in rank0["sanity"]:
        assert torch.equal(rank0["sanity"][name], rank1["sanity"][name]), name
    for name, weight in rank0["sanity_weights"].items():
        assert torch.equal(weight, rank1["sanity_weights"][name]), name
    before, after = rank0["grasp_weights"], rank0["sanity_weights"]
    assert any(not torch.equal(before[k], after[k]) for k in before if "weight" in k)
