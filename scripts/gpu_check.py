"""GPU-only checks of sparsify, one per call (``scripts/gpu_check.sh`` runs them all):

    python scripts/gpu_check.py ddp_nccl OUT    # DDP on every GPU (NCCL): identical masks
    python scripts/gpu_check.py fp16_ham OUT    # 16-mixed (GradScaler), HAM: fp32 state, learns
    python scripts/gpu_check.py bf16_fast OUT   # bf16 + channels_last + torch.compile: learns
    python scripts/gpu_check.py step_time OUT   # m ⊙ w vs dense step time, ResNet-50, 224 px
    python scripts/gpu_check.py semi_structured OUT  # 2:4 masks run as to_sparse_semi_structured

Each prints one line ``PASS ...`` or raises. Runs use digits (no dataset to download),
W&B disabled; their folders stay under OUT.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--wandb=false", "--trainer.enable_progress_bar=false"]
QUIET += ["--trainer.enable_model_summary=false", "--trainer.accelerator=gpu"]


def fit(out: Path, *args: str) -> dict:
    """``sparsify fit`` in a subprocess; its summary.json."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "sparsify", "fit", *args, *QUIET]
    command.append(f"--trainer.default_root_dir={out}")
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    (path,) = out.glob("**/summary.json")
    return json.loads(path.read_text())


def ddp_nccl(out: Path) -> str:
    gpus = torch.cuda.device_count()
    fit(
        out,
        "--config=method/snip_signin",
        "--trainer.strategy=ddp",
        f"--trainer.devices={gpus}",
        "--trainer.max_epochs=4",
        "--trainer.callbacks+=run_helpers.DumpState",
        f"--trainer.callbacks.out_dir={out}",
    )
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(gpus)]
    assert all(rank["world_size"] == gpus for rank in ranks)
    for rank in ranks[1:]:
        for key, value in ranks[0]["model"].items():
            assert torch.equal(value, rank["model"][key]), key
    found = re.search(r"distributed_backend=(\w+)", out.with_suffix(".log").read_text())
    backend = found.group(1) if found else "not printed"
    assert backend == "nccl", f"DDP ran with backend {backend}"
    return f"DDP on {gpus} GPU(s) (backend {backend}): identical weights and masks on every rank"


def precision_fit(out: Path, precision: str, *args: str) -> dict:
    """``fit`` for ten epochs on one GPU in ``precision``."""
    run = ["--trainer.devices=1", "--trainer.max_epochs=10", f"--trainer.precision={precision}"]
    return fit(out, *args, *run)


def fp16_ham(out: Path) -> str:
    recorder = [
        "--trainer.callbacks+=test_precision.RecordDtypes",
        f"--trainer.callbacks.out_dir={out}",
    ]
    summary = precision_fit(out, "16-mixed", "--config=method/ham", *recorder)
    record = json.loads((out / "dtypes.json").read_text())
    assert record["outputs"] == ["torch.float16"], record["outputs"]
    assert set(record["params"].values()) == {"torch.float32"}
    assert record["grads"] == ["torch.float32"]
    assert summary["test_acc"] > 0.3, summary  # chance is 0.1
    return f"16-mixed + GradScaler + HAM: fp32 state, test acc {summary['test_acc']:.3f}"


def bf16_fast(out: Path) -> str:
    fast = ["--model.init_args.channels_last=true", "--model.init_args.compile=true"]
    summary = precision_fit(out, "bf16-mixed", *fast)
    assert summary["test_acc"] > 0.3, summary  # chance is 0.1
    return f"bf16-mixed + channels_last + torch.compile (PILoT): test acc {summary['test_acc']:.3f}"


def step_time(out: Path, batch: int = 64, reps: int = 20) -> str:
    """Median training step (SGD) of ResNet-50 on 224 px, dense and m ⊙ w, fp32 and bf16."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench
    from bench import build, timed, train_step

    bench.MODEL_KWARGS.setdefault("resnet50", {"num_classes": 1000})

    x = torch.randn(batch, 3, 224, 224, device="cuda")
    y = torch.randint(0, 1000, (batch,), device="cuda")
    lines = []
    for precision in ("fp32", "bf16"):
        runs = {m: build(m, "resnet50", "cuda", (x, y)) for m in ("dense", "m ⊙ w")}
        times = {m: [] for m in runs}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            for run in runs.values():
                train_step(run, x, y)
            for _ in range(reps):
                for method, run in runs.items():
                    times[method].append(timed(lambda run=run: train_step(run, x, y), "cuda"))
        dense, pointwise = (statistics.median(times[m]) for m in ("dense", "m ⊙ w"))
        lines.append(
            f"{precision}: dense {1000 * dense:.1f} ms, m ⊙ w {1000 * pointwise:.1f} ms "
            f"({pointwise / dense:.2f}×)"
        )
        del runs
        torch.cuda.empty_cache()
    (out / "step_time.txt").write_text("\n".join(lines) + "\n")
    name = torch.cuda.get_device_name()
    return f"ResNet-50 224 px batch {batch} on {name}: " + "; ".join(lines)


def semi_structured(out: Path, batch: int = 64) -> str:
    """2:4 masks from ``magnitude_prune(pattern="2:4")`` convert to
    ``torch.sparse.to_sparse_semi_structured`` (fp16, rows and columns multiples of 64 / 32),
    and the converted model's outputs equal the masked dense model's (fp16 tolerances: the
    sparse kernel sums in another order)."""
    from torch import nn

    from sparsify import collapse
    from sparsify.masks import magnitude_prune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 128))
    model = model.half().cuda().eval()
    magnitude_prune(model, 0.5, pattern="2:4")
    collapse(model)
    x = torch.randn(batch, 128, dtype=torch.half, device="cuda")
    with torch.inference_mode():
        dense = model(x)
    for layer in (model[0], model[2]):
        groups = (layer.weight != 0).reshape(layer.weight.shape[0], -1, 4).sum(-1)
        assert int(groups.max()) <= 2, "the mask is not 2:4"
        sparse_weight = torch.sparse.to_sparse_semi_structured(layer.weight.detach())
        layer.weight = nn.Parameter(sparse_weight, requires_grad=False)
    with torch.inference_mode():
        sparse = model(x)
    difference = float((sparse - dense).abs().max())
    torch.testing.assert_close(sparse, dense, rtol=1e-2, atol=1e-2)
    (out / "semi_structured.txt").write_text(f"max |sparse - dense| = {difference:.3g}\n")
    kind = type(model[0].weight).__name__
    return f"2:4 masks as {kind}: outputs equal the masked dense model (max diff {difference:.3g})"


CHECKS = {"ddp_nccl": ddp_nccl, "fp16_ham": fp16_ham, "bf16_fast": bf16_fast}
CHECKS["step_time"] = step_time
CHECKS["semi_structured"] = semi_structured

if __name__ == "__main__":
    name, out = sys.argv[1], Path(sys.argv[2]) / sys.argv[1]
    out.mkdir(parents=True, exist_ok=True)
    print(f"PASS {name}: {CHECKS[name](out)}")
