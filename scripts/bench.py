"""Training overhead of every sparsify method against dense training, SynFlow's cost, and the
sparse inference speedup. Not a test: run it and paste the markdown it prints into
docs/performance.md.

    python scripts/bench.py [--models resnet20 vit_tiny] [--batch 128] [--reps 7]

Every method trains its own copy of the model with SGD (momentum 0.9, weight decay 5e-4) on
one fixed random batch. The methods take turns, one step each, ``--reps`` times (interleaved, so
a change in machine load hits all of them alike); the median step time is reported as a ratio to
dense. Work a method does only every N steps (Sign-In's rescale, GMP's pruning, RiGL's mask
update) is timed separately as "periodic op" and not inside the step.

Memory is the training footprint, measured the same way on every device: parameters, buffers,
gradients and optimizer state, plus the tensors autograd saves for the backward pass
(``torch.autograd.graph.saved_tensors_hooks``, each storage counted once).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelPruning
from torch import nn
from torch.nn.utils import parametrize

from sparsify.export import to_sparse
from sparsify.masks import magnitude_prune, set_masks
from sparsify.models import create_model
from sparsify.optim import HAM
from sparsify.pai import prune_at_init
from sparsify.reparam import (
    add_masks,
    collapse,
    layer_masks,
    prunable_layers,
    reparametrize,
    rescale_,
)
from sparsify.soft_masks import sigmoid_mask, soft_threshold
from sparsify.state import unmasked_weight

SPARSITY = 0.9


@dataclass
class Run:
    """One method's model and optimizer, and its periodic operation (or None)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    periodic: Callable[[], None] | None = None
    times: list[float] = field(default_factory=list)
    op_times: list[float] = field(default_factory=list)


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def build(method: str, name: str, device: str, batch) -> Run:
    torch.manual_seed(0)
    model = create_model(name, **MODEL_KWARGS[name]).to(device)
    if method == "dense":
        return Run(model, sgd(model))
    if method == "m ⊙ w":
        reparametrize(model, beta=1.0)
        return Run(model, sgd(model))
    if method == "PaI (fixed mask)":
        prune_at_init(model, SPARSITY, "random")
        return Run(model, sgd(model))
    if method == "Sign-In (m ⊙ w + rescale)":
        reparametrize(model, beta=1.0)
        return Run(model, sgd(model), lambda: rescale_(model, 1.0))
    if method == "GMP (sparsify)":
        add_masks(model)
        targets = iter(cubic_targets())
        return Run(model, sgd(model), lambda: magnitude_prune(model, next(targets)))
    if method == "GMP (Lightning ModelPruning)":
        return model_pruning_run(model)
    if method == "RiGL-like mask update":
        prune_at_init(model, SPARSITY, "magnitude")
        return Run(model, sgd(model), lambda: rigl_update(model, batch, 0.3))
    if method == "STR":
        soft_threshold(model)
        return Run(model, sgd(model))
    if method == "CS":
        sigmoid_mask(model)
        return Run(model, sgd(model))
    if method == "HAM":
        return Run(model, HAM(sgd(model)))
    raise ValueError(method)


METHODS = [
    "dense",
    "m ⊙ w",
    "PaI (fixed mask)",
    "Sign-In (m ⊙ w + rescale)",
    "GMP (sparsify)",
    "GMP (Lightning ModelPruning)",
    "RiGL-like mask update",
    "STR",
    "CS",
    "HAM",
]

MODEL_KWARGS = {
    "resnet20": {"num_classes": 10},
    "vit_tiny": {"num_classes": 10, "image_size": 32},
}


def cubic_targets(steps: int = 1000) -> list[float]:
    """GMP's cubic schedule from 0 to SPARSITY in ``steps`` prunings (then held)."""
    return [SPARSITY * (1 - (1 - k / steps) ** 3) for k in range(1, steps + 1)] + [SPARSITY] * 99


def model_pruning_run(model: nn.Module) -> Run:
    """The same global magnitude pruning, done by Lightning's ModelPruning (torch.nn.utils.prune:
    weight_orig and weight_mask, recombined by a forward pre-hook)."""
    layers = [(layer, "weight") for _, layer in prunable_layers(model)]
    pruner = ModelPruning("l1_unstructured", layers, use_global_unstructured=True, verbose=0)
    pruner.setup(None, model, "fit")
    reached = [0.0]

    def prune():
        target = next(targets)
        pruner.apply_pruning(1 - (1 - target) / (1 - reached[0]))  # a fraction of what is left
        reached[0] = target

    targets = iter(cubic_targets())
    pruner.apply_pruning(1e-6)  # installs the hooks, so every step runs through them
    return Run(model, sgd(model), prune)


@torch.no_grad()
def keep_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    keep = torch.zeros(scores.numel(), device=scores.device)
    if k > 0:
        keep[torch.topk(scores.flatten(), k, sorted=False).indices] = 1
    return keep.view_as(scores)


def rigl_update(model: nn.Module, batch, fraction: float) -> None:
    """RiGL (Evci et al. 2020): per layer drop the ``fraction`` smallest active |θ| and grow as
    many inactive weights with the largest dense gradient |∇L(θ)|, grown weights starting at 0.
    The dense gradient needs its own forward/backward, which is part of the cost."""
    x, y = batch
    with parametrize.cached():
        weights = {name: layer.weight for name, layer in prunable_layers(model)}
        for w in weights.values():
            w.retain_grad()
        F.cross_entropy(model(x), y).backward()
        grads = {name: w.grad for name, w in weights.items()}
    model.zero_grad(set_to_none=True)
    new_masks = {}
    with torch.no_grad():
        for name, mask in layer_masks(model).items():
            theta = weights[name].detach()
            active = int(mask.sum())
            n_move = int(fraction * active)
            kept = keep_topk(torch.where(mask > 0, theta.abs(), -1.0), active - n_move)
            grown = keep_topk(torch.where(kept > 0, -1.0, grads[name].abs()), n_move)
            original = unmasked_weight(model.get_submodule(name))
            original[grown > 0] = 0
            new_masks[name] = kept + grown
    set_masks(model, new_masks)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> None:
    run.optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(run.model(x), y).backward()
    run.optimizer.step()


def training_memory(run: Run, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of parameters, buffers, gradients, optimizer state and saved activations."""
    storages: dict[int, int] = {}

    def count(t: torch.Tensor) -> None:
        if isinstance(t, torch.Tensor) and not t.is_sparse and t.layout == torch.strided:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()

    def pack(t):
        count(t)
        return t

    run.optimizer.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(run.model(x), y)
    loss.backward()
    for t in [*run.model.parameters(), *run.model.buffers()]:
        count(t)
        if t.grad is not None:
            count(t.grad)
    for state in run.optimizer.state.values():
        for value in state.values():
            count(value)
    run.optimizer.zero_grad(set_to_none=True)
    return sum(storages.values())


def bench_training(
    name: str, device: str, batch_size: int, reps: int, methods: list[str]
) -> list[dict]:
    torch.manual_seed(0)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    runs = {method: build(method, name, device, (x, y)) for method in ["dense", *methods]}
    memory = {method: training_memory(run, x, y) for method, run in runs.items()}
    for run in runs.values():  # warm-up: allocator, kernels, first pruning
        train_step(run, x, y)
        if run.periodic is not None:
            run.periodic()
    for _ in range(reps):
        for run in runs.values():
            run.times.append(timed(lambda run=run: train_step(run, x, y), device))
            if run.periodic is not None:
                run.op_times.append(timed(run.periodic, device))
    dense = statistics.median(runs["dense"].times)
    rows = []
    for method, run in runs.items():
        step = statistics.median(run.times)
        rows.append(
            {
                "model": name,
                "method": method,
                "step_ms": 1000 * step,
                "ratio": step / dense,
                "op_ms": 1000 * statistics.median(run.op_times) if run.op_times else None,
                "memory_mb": memory[method] / 2**20,
                "memory_ratio": memory[method] / memory["dense"],
            }
        )
    return rows


def bench_synflow(rounds: int, device: str) -> float:
    model = create_model("resnet50", num_classes=1000).to(device)
    start = time.perf_counter()
    prune_at_init(model, SPARSITY, "synflow", rounds=rounds, input_shape=(3, 224, 224))
    synchronize(device)
    return time.perf_counter() - start


@torch.no_grad()
def bench_inference(name: str, device: str, batch_size: int, reps: int) -> list[dict]:
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    rows = []
    for sparsity in (0.9, 0.95, 0.98):
        torch.manual_seed(0)
        model = create_model(name, **MODEL_KWARGS[name]).to(device).eval()
        add_masks(model)
        magnitude_prune(model, sparsity, scope="layer")
        sparse = to_sparse(model)
        dense = collapse(model)
        error = (sparse(x) - dense(x)).abs().max().item()
        times = {"dense": [], "sparse": []}
        for _ in range(reps):
            times["dense"].append(timed(lambda dense=dense: dense(x), device))
            times["sparse"].append(timed(lambda sparse=sparse: sparse(x), device))
        d, s = statistics.median(times["dense"]), statistics.median(times["sparse"])
        rows.append(
            {
                "model": name,
                "sparsity": sparsity,
                "dense_ms": 1000 * d,
                "sparse_ms": 1000 * s,
                "speedup": d / s,
                "max_abs_diff": error,
            }
        )
    return rows


def markdown(training: list[dict], inference: list[dict], synflow: float | None, args) -> str:
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
        f"load average before the run {os.getloadavg()[0]:.1f}",
        f"Command: `python scripts/bench.py --device {args.device} --batch {args.batch} "
        f"--reps {args.reps} --models {' '.join(args.models)} --methods "
        + " ".join(f"'{m}'" for m in args.methods)
        + "`",
        "",
        "| model | method | step (ms) | × dense | periodic op (ms) | memory (MiB) | × dense |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in training:
        op = "" if r["op_ms"] is None else f"{r['op_ms']:.0f}"
        lines.append(
            f"| {r['model']} | {r['method']} | {r['step_ms']:.0f} | {r['ratio']:.2f} | {op} | "
            f"{r['memory_mb']:.0f} | {r['memory_ratio']:.2f} |"
        )
    lines += [
        "",
        "| model | sparsity | dense (ms) | sparse (ms) | speedup | max abs diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in inference:
        lines.append(
            f"| {r['model']} | {r['sparsity']:.0%} | {r['dense_ms']:.1f} | {r['sparse_ms']:.1f} "
            f"| {r['speedup']:.2f} | {r['max_abs_diff']:.1e} |"
        )
    if synflow is not None:
        lines += ["", f"SynFlow, {args.synflow_rounds} rounds, ResNet-50 (224 px): {synflow:.1f} s"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["resnet20", "vit_tiny"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", nargs="+", default=METHODS[1:], choices=METHODS[1:])
    parser.add_argument("--synflow-rounds", type=int, default=100, help="0: skip SynFlow")
    args = parser.parse_args()
    training, inference = [], []
    for name in args.models:
        training += bench_training(name, args.device, args.batch, args.reps, args.methods)
        inference += bench_inference(name, args.device, args.batch, args.reps)
    synflow = bench_synflow(args.synflow_rounds, args.device) if args.synflow_rounds else None
    print(markdown(training, inference, synflow, args))


if __name__ == "__main__":
    main()
