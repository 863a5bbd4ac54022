"""SynFlow on torchvision ResNet-50 (224 px, 1000 classes): sparsify's ``pai_masks`` against
ganguli-lab/Synaptic-Flow's own pruner, timed alternately in one process, and their masks.

    git clone https://github.com/ganguli-lab/Synaptic-Flow /tmp/Synaptic-Flow
    nice -n 10 python scripts/bench_synflow.py --reference /tmp/Synaptic-Flow [--rounds 5] \
        [--threads 1] [--precisions mixed float64 float32]

Not a test: it prints a markdown table for docs/performance.md.

The reference runs its own ``SynFlow`` class (``Pruners/pruners.py``: ``score`` replaces every
state-dict tensor by its absolute value, R = sum(model(ones)), scores |θ ⊙ ∂R/∂θ|, signs put
back; ``_global_mask``: one ``kthvalue`` threshold over all scores) for ``--rounds`` rounds of
``prune.py``'s ``prune_loop`` (exponential schedule: density d^(k/rounds) in round k, scope
global). Its layers multiply each weight by a mask buffer in the forward; here the same mask
buffers are sparsify's (``add_masks``: θ = W ⊙ mask), handed to the pruner as its
``(mask, parameter)`` pairs. It runs in float64 (the reference's own ``model.double()`` line is
commented out; in float32 R is not finite on ResNet-50 at 224 px): the model copy is float64
and so is the all-ones input (default dtype float64 during its rounds). Only its rounds are
timed, not building its float64 masked copy; sparsify's time is the whole ``pai_masks`` call
(copy, trace, rounds).

The contenders take turns ``--reps`` times on the same freshly built model, so machine load
hits them alike; each ratio is of the medians against the reference. Sparsify runs once per
``--precisions`` entry (``pai_masks``' ``synflow_precision``). Overlap is |a ∧ b| / |b| over
kept weights, against the reference and against sparsify's own ``"float64"`` masks.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from typing import get_args

import torch

from sparsify.models import create_model
from sparsify.pai import SynflowPrecision, pai_masks
from sparsify.reparam import add_masks, layer_masks, prunable_layers
from sparsify.state import unmasked_weight

SHAPE = (3, 224, 224)


def reference_pruner(reference_dir: str, model: torch.nn.Module):
    """A float64 masked copy of ``model`` and Synaptic-Flow's SynFlow pruner over its masks."""
    sys.path.insert(0, reference_dir)
    from Pruners.pruners import SynFlow  # the reference's own class, from its checkout

    masked = copy.deepcopy(model).double().eval()
    add_masks(masked)
    masks = layer_masks(masked)
    layers = dict(prunable_layers(masked))
    pairs = [(masks[name], unmasked_weight(layers[name])) for name in masks]
    return masked, SynFlow(pairs), masks


def run_reference(reference_dir, model, density: float, rounds: int):
    masked, pruner, masks = reference_pruner(reference_dir, model)
    data = [(torch.zeros(1, *SHAPE, dtype=torch.float64), torch.zeros(1, dtype=torch.long))]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # its ``torch.ones`` input, like its model
    try:
        start, cpu = time.perf_counter(), time.process_time()
        for epoch in range(rounds):  # prune_loop, exponential schedule, global scope
            pruner.score(masked, None, data, "cpu")
            pruner.mask(density ** ((epoch + 1) / rounds), "global")
        elapsed = time.perf_counter() - start, time.process_time() - cpu
    finally:
        torch.set_default_dtype(default)
    return elapsed, {name: mask.clone() for name, mask in masks.items()}


def run_sparsify(model, sparsity: float, rounds: int, precision: str):
    start, cpu = time.perf_counter(), time.process_time()
    masks = pai_masks(
        model, sparsity, "synflow", rounds=rounds, input_shape=SHAPE, synflow_precision=precision
    )
    return (time.perf_counter() - start, time.process_time() - cpu), masks


def overlap(ours: dict, theirs: dict) -> float:
    shared = sum(int((ours[n].bool() & theirs[n].bool()).sum()) for n in theirs)
    return shared / sum(int(theirs[n].bool().sum()) for n in theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="a checkout of Synaptic-Flow")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    precisions = get_args(SynflowPrecision)
    parser.add_argument("--precisions", nargs="+", default=["mixed"], choices=precisions)
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.reference, "Pruners", "pruners.py")):
        parser.exit(2, f"--reference={args.reference!r} is invalid: no Pruners/pruners.py there\n")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("resnet50", num_classes=1000)
    load = os.getloadavg()[0]
    names = [f"sparsify {p}" for p in args.precisions] + ["reference"]
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    masks = {}
    for rep in range(args.reps):
        for precision in args.precisions:
            t, masks[f"sparsify {precision}"] = run_sparsify(
                model, args.sparsity, args.rounds, precision
            )
            times[f"sparsify {precision}"].append(t)
        t, masks["reference"] = run_reference(args.reference, model, 1 - args.sparsity, args.rounds)
        times["reference"].append(t)
        each = ", ".join(
            f"{n} {times[n][-1][0]:.1f} s ({times[n][-1][1]:.1f} s CPU)" for n in names
        )
        print(f"rep {rep}: {each}", flush=True)
    print(
        f"\nMachine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {load:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after"
    )
    print(f"ResNet-50, 224 px, sparsity {args.sparsity}, {args.rounds} rounds, {args.reps} reps\n")
    print(
        "| | median wall (s) | median CPU (s) | every rep, wall / CPU (s) | ratio (wall) | "
        "ratio (CPU) | kept | overlap with the reference | overlap with sparsify float64 |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    medians = {
        n: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
        for n, ts in times.items()
    }
    exact = masks.get("sparsify float64")
    for name in names:
        wall, cpu = medians[name]
        runs = ", ".join(f"{t[0]:.1f} / {t[1]:.1f}" for t in times[name])
        ratio = [medians[name][i] / medians["reference"][i] for i in (0, 1)]
        kept = sum(int(m.bool().sum()) for m in masks[name].values())
        versus = f"{overlap(masks[name], exact):.5f}" if exact is not None else ""
        print(
            f"| {name} | {wall:.1f} | {cpu:.1f} | {runs} | {ratio[0]:.2f} | {ratio[1]:.2f} | "
            f"{kept} | {overlap(masks[name], masks['reference']):.5f} | {versus} |"
        )


if __name__ == "__main__":
    main()
