"""PILoT at high sparsity (docs/results.md): per-run rows and per-epoch traces of PILoT's logged
α_t, ‖m ⊙ w‖₁, inner scale and L1 share outside the top (1 − s) weights, from the folders of
``sparsify compare`` folders; the 3-seed table (mean ± sample std) and a plot.

    python scripts/pilot_high_sparsity.py runs/pilot_high_sparsity runs/pilot_candidates \
        runs/pilot_sweep --out docs/results

``--extra`` adds the rows of other comparisons' ``results.csv`` to the table and CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

TRACE_KEYS = (
    "pilot/alpha",
    "pilot/l1_norm",
    "pilot/inner_scale",
    "pilot/l1_outside_top",
    "train/acc_epoch",
)
ROW_KEYS = ("method", "sparsity_target", "seed", "test_acc", "test_acc_before_pruning")


def finetune_epochs(run_dir: Path) -> int:
    recipe = yaml.safe_load((run_dir / "method.yaml").read_text())
    for callback in recipe["trainer"]["callbacks"]:
        if callback["class_path"].endswith("PruneAtEnd"):
            return int(callback["init_args"].get("finetune_epochs", 0))
    return 0


def trace(run_dir: Path) -> list[dict]:
    """One row per epoch: the PILoT values logged at its end (α is the epoch's own)."""
    (metrics,) = run_dir.glob("lightning_logs/version_*/metrics.csv")
    epochs: dict[int, dict] = defaultdict(dict)
    for row in csv.DictReader(metrics.open()):
        if row.get("epoch"):
            for key in TRACE_KEYS:
                if row.get(key):
                    name = "train_acc" if key == "train/acc_epoch" else key.split("/")[1]
                    epochs[int(row["epoch"])][name] = float(row[key])
    return [{"epoch": epoch, **values} for epoch, values in sorted(epochs.items())]


def unexplained_growth(epochs: list[dict], delta: float = 1.2) -> int:
    """Epochs after which α grew although the paper's rule forbids it (the train accuracy did
    not improve, or k ≥ T/2), or shrank although it improved in the first half and α grew
    again later at a smaller ‖m ⊙ w‖₁ (so K cannot explain it): the logged run replayed
    against Algorithm 1. 0 for a faithful run."""
    total, wrong = len(epochs), 0
    for k in range(len(epochs) - 1):
        grew = epochs[k + 1]["alpha"] > epochs[k]["alpha"] * (1 + delta) / 2
        improved = k == 0 or epochs[k]["train_acc"] > epochs[k - 1]["train_acc"]
        first_half = k < total / 2
        if grew and not (improved and first_half):
            wrong += 1
        if not grew and improved and first_half:
            later_growth = [
                epochs[j]["l1_norm"]
                for j in range(k + 1, len(epochs) - 1)
                if epochs[j + 1]["alpha"] > epochs[j]["alpha"] * (1 + delta) / 2
            ]
            if later_growth and min(later_growth) < epochs[k]["l1_norm"]:
                wrong += 1  # it grew later at a smaller norm: not K either
    return wrong


def stopped_by_norm(epochs: list[dict], delta: float = 1.2) -> int:
    """First-half epochs whose train accuracy improved but after which α shrank: under the
    paper's rule only ‖m ⊙ w‖₁ ≤ K stops growth there (with ``outside_top_tolerance``, the L1
    share outside the top (1 − s) at or under the tolerance)."""
    total, count = len(epochs), 0
    for k in range(len(epochs) - 1):
        grew = epochs[k + 1]["alpha"] > epochs[k]["alpha"] * (1 + delta) / 2
        improved = k == 0 or epochs[k]["train_acc"] > epochs[k - 1]["train_acc"]
        count += improved and k < total / 2 and not grew
    return count


def finished_runs(compare_dir: Path):
    """``(method, target, seed, run folder, summary)`` of every finished run of a
    ``sparsify compare`` folder (``runs/<method>/s<target>/seed<seed>`` with a summary.json)."""
    for run_dir in sorted(compare_dir.glob("runs/*/s*/seed*")):
        summaries = list(run_dir.glob("lightning_logs/version_*/summary.json"))
        if summaries:
            summary = json.loads(summaries[0].read_text())
            method, target, seed = run_dir.parts[-3], run_dir.parts[-2][1:], run_dir.name[4:]
            yield method, target, seed, run_dir, summary


def runs(compare_dir: Path) -> tuple[list[dict], list[dict]]:
    """One row per finished run, with the PILoT values at the last epoch before pruning, and
    the per-epoch traces."""
    rows, traces = [], []
    for method, target, seed, run_dir, summary in finished_runs(compare_dir):
        row = {
            "method": method,
            "sparsity_target": target,
            "seed": seed,
            "test_acc": summary["test_acc"],
            "test_acc_before_pruning": summary.get("test_acc_before_pruning", ""),
            "sparsity": summary.get("sparsity", ""),
            "wall_time_s": json.loads((run_dir / "run.json").read_text())["wall_time_s"],
        }
        epochs = trace(run_dir)
        if not epochs or "alpha" not in epochs[0]:  # not a PILoT run (GMP, spred)
            rows.append(row)
            continue
        traces += [{"method": method, "sparsity_target": target, "seed": seed, **e} for e in epochs]
        before = epochs[len(epochs) - finetune_epochs(run_dir) - 1]
        alphas = [e["alpha"] for e in epochs]
        rows.append(
            {
                **row,
                "l1_outside_top_before_pruning": before.get("l1_outside_top", ""),
                "inner_scale_before_pruning": before.get("inner_scale", ""),
                "l1_norm_ratio_before_pruning": before["l1_norm"] / epochs[0]["l1_norm"],
                "alpha_max": max(alphas),
                "alpha_max_epoch": alphas.index(max(alphas)),
                "growth_stopped_by_K": stopped_by_norm(epochs),
                "rule_mismatches": unexplained_growth(epochs),
            }
        )
    return rows, traces


def mean_std(values: list[float], scale: float = 1.0, digits: int = 2, kind: str = "f") -> str:
    values = [v * scale for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}{kind}} ± {std:.{digits}{kind}}"


def table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["method"], float(row["sparsity_target"]))].append(row)
    lines = [
        "| method | target | seeds | test acc (%) | before pruning (%) | L1 outside top (%) "
        "| inner scale | max α (epoch) | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, target), group in sorted(groups.items()):

        def column(key, scale=1.0, digits=2, kind="f", group=group):
            values = [float(r[key]) for r in group if r.get(key) not in (None, "")]
            return mean_std(values, scale, digits, kind) if values else ""

        alpha = ""
        if group[0].get("alpha_max") not in (None, ""):
            epochs = sorted({int(r["alpha_max_epoch"]) for r in group})
            alpha = f"{column('alpha_max', digits=4)} ({', '.join(map(str, epochs))})"
        lines.append(
            f"| {method} | {target:.0%} | {len(group)} | {column('test_acc', 100)} "
            f"| {column('test_acc_before_pruning', 100)} "
            f"| {column('l1_outside_top_before_pruning', 100, 1)} "
            f"| {column('inner_scale_before_pruning', digits=1, kind='e')} | {alpha} "
            f"| {column('wall_time_s', digits=0)} |"
        )
    return "\n".join(lines)


def plot(traces: list[dict], path: Path, target: str = "0.99", methods: list | None = None) -> None:
    """α_t, the L1 share outside the top (1 − s) and ‖m ⊙ w‖₁ / its first value over the
    epochs before pruning, at target sparsity ``target``: one colour per method (``methods``,
    default all), a line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    at_target = [t for t in traces if t["sparsity_target"] == target]
    methods = methods or list(dict.fromkeys(t["method"] for t in at_target))
    for index, method in enumerate(methods):
        for seed in sorted({t["seed"] for t in at_target if t["method"] == method}):
            series = [t for t in at_target if t["method"] == method and t["seed"] == seed]
            before = [t for t in series if t.get("l1_outside_top", 0) > 1e-6]  # not yet pruned
            epochs = [t["epoch"] for t in before]
            style = {"color": f"C{index}", "label": method if seed == "0" else None, "lw": 1}
            axes[0].plot([t["epoch"] for t in series], [t["alpha"] for t in series], **style)
            axes[1].plot(epochs, [t["l1_outside_top"] for t in before], **style)
            first = series[0]["l1_norm"]
            axes[2].plot(epochs, [t["l1_norm"] / first for t in before], **style)
    axes[0].set(xlabel="epoch", ylabel="α_t", yscale="log", title="α_t")
    axes[1].set(
        xlabel="epoch",
        ylabel="share of ‖m⊙w‖₁",
        title=f"L1 mass outside the top {1 - float(target):.0%} of |θ|",
        ylim=(0, 1),
    )
    axes[2].set(xlabel="epoch", ylabel="‖m⊙w‖₁ / epoch 0", yscale="log", title="L1 norm")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"PILoT on digits, target {float(target):.0%}, before pruning (3 seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_csv(rows: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("compare_dirs", nargs="+", type=Path)
    parser.add_argument("--extra", nargs="*", type=Path, default=[])
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--plot-methods", nargs="*", help="the methods of the plot (default all)")
    args = parser.parse_args()
    rows, traces = [], []
    for compare_dir in args.compare_dirs:
        more_rows, more_traces = runs(compare_dir)
        rows += more_rows
        traces += more_traces
    for extra in args.extra:
        rows += [
            {k: r[k] for k in (*ROW_KEYS, "wall_time_s")} for r in csv.DictReader(extra.open())
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "pilot_high_sparsity.csv")
    write_csv(traces, args.out / "pilot_high_sparsity_epochs.csv")
    plot(traces, args.out / "pilot_high_sparsity.png", methods=args.plot_methods)
    print(table(rows))


if __name__ == "__main__":
    main()
