"""The PILoT paper's one-shot protocol for the dense-to-sparse recipes (docs/results.md, "The
one-shot protocol on digits"): runs ``sparsify compare --config compare/digits_one_shot`` (every
run writes the one-shot curve of its model as trained, ``eval/one_shot_curve``), then gathers the
curves into one CSV (``method, seed, k, sparsity, test_acc, achieved_sparsity``), a plot of
accuracy against sparsity (mean ± std over the seeds, density on a log axis) and a markdown
table at a few k (mean ± sample std, in %).

    OMP_NUM_THREADS=1 nice -n 10 python scripts/one_shot_protocol.py --results docs/results

Every other argument goes to ``sparsify compare`` (``--seeds 0``, ``--methods ...``,
``--trainer.max_epochs=2``, ``--out DIR``); ``--skip-run`` only gathers what the grid's folders
hold. Finished runs are kept, as ``sparsify compare`` keeps them.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

from sparsify.app import compare
from sparsify.app.cli import one_line_errors
from sparsify.app.compare_report import mean_std_text
from sparsify.app.launchers import finished_summary

COMPARISON = "compare/digits_one_shot"
COLUMNS = ("method", "seed", "k", "sparsity", "test_acc", "achieved_sparsity")
TABLE_KS = (10, 14, 18, 21, 25)  # 1 − 0.8^k ≈ 89.3, 95.6, 98.2, 99.1, 99.6 %


def grid(compare_argv: list[str]) -> list[compare.Run]:
    """The runs of the comparison ``compare_argv`` names, as ``sparsify compare`` makes them."""
    args, fit_args = compare.parse_args(compare_argv)
    return compare.make_grid(compare.load_settings(args, fit_args))


def gather(runs: list[compare.Run]) -> tuple[list[dict], dict]:
    """(curve rows of every finished run, {(method, seed): accuracy of the model as trained})."""
    rows, trained = [], {}
    for run in runs:
        summary = finished_summary(run.folder)
        if summary is None:
            continue
        (curve,) = run.folder.glob("**/one_shot_curve.csv")
        label = run.method.label
        before = summary.get("test_acc_before_pruning")
        trained[label, run.seed] = summary["test_acc"] if before is None else before
        for row in csv.DictReader(curve.open()):
            rows.append(
                {
                    "method": label,
                    "seed": run.seed,
                    "k": int(row["k"]),
                    "sparsity": float(row["sparsity"]),
                    "test_acc": float(row["accuracy"]),
                    "achieved_sparsity": float(row["achieved_sparsity"]),
                }
            )
    return rows, trained


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def by_method_and_k(rows: list[dict], key: str = "test_acc") -> dict:
    """{method: {k: [value of each seed]}}, methods in the order they first appear."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        out[row["method"]][row["k"]].append(row[key])
    return out


def table(rows: list[dict], trained: dict, ks: tuple = TABLE_KS) -> str:
    """Markdown: per method, the accuracy as trained and at 1 − 0.8^k for each k (mean ± std %,
    over seeds), and the model's own sparsity where it exceeds the curve's first step."""
    accuracy, achieved = by_method_and_k(rows), by_method_and_k(rows, "achieved_sparsity")
    sparsity = {row["k"]: row["sparsity"] for row in rows}
    head = ["method", "seeds", "as trained", *(f"{sparsity[k]:.1%} (k = {k})" for k in ks)]
    head.append("zeros as trained")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, curve in accuracy.items():
        seeds = [acc for (m, _), acc in trained.items() if m == method]
        own = achieved[method][1]  # at k = 1 (20 %): above it only with the model's own zeros
        zeros = f"{statistics.fmean(own):.1%}" if min(own) > sparsity[1] + 1e-3 else "—"
        cells = [method, str(len(seeds)), mean_std_text(seeds)]
        cells += [mean_std_text(curve[k]) for k in ks] + [zeros]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Accuracy (%) against sparsity, the x axis log(density) so that 90–99.6 % is readable;
    a line for the mean over seeds and a band for ± one sample std, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracy = by_method_and_k(rows)
    sparsity = {row["k"]: row["sparsity"] for row in rows}
    fig, ax = plt.subplots(figsize=(8, 4.8))
    colors = plt.get_cmap("tab10")
    for i, (method, curve) in enumerate(accuracy.items()):
        ks = sorted(curve)
        density = [1 - sparsity[k] for k in ks]
        mean = [100 * statistics.fmean(curve[k]) for k in ks]
        std = [100 * statistics.stdev(curve[k]) if len(curve[k]) > 1 else 0.0 for k in ks]
        ax.plot(density, mean, marker=".", color=colors(i), label=method)
        low = [m - s for m, s in zip(mean, std)]
        high = [m + s for m, s in zip(mean, std)]
        ax.fill_between(density, low, high, color=colors(i), alpha=0.15)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ticks = [0.2, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.996]
    ax.set_xticks([1 - s for s in ticks], [f"{s:.1%}".replace(".0%", "%") for s in ticks])
    ax.minorticks_off()
    ax.set_xlabel("sparsity (one-shot global magnitude pruning, no fine-tuning; log density)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> tuple[list[dict], str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("docs/results"))
    parser.add_argument("--name", default="digits_one_shot", help="file names in --results")
    parser.add_argument("--skip-run", action="store_true", help="only gather the finished runs")
    args, compare_argv = parser.parse_known_args(argv)
    if "--config" not in compare_argv:
        compare_argv = ["--config", COMPARISON, *compare_argv]
    if "--wandb" not in " ".join(compare_argv):
        compare_argv.append("--wandb=false")
    with one_line_errors():
        runs = grid(compare_argv)
    if not args.skip_run:
        compare.main(compare_argv)
    rows, trained = gather(runs)
    if not rows:  # a dry run, or nothing finished yet
        print("one-shot protocol: no finished run to gather yet")
        return rows, ""
    args.results.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.results / f"{args.name}.csv")
    plot(rows, args.results / f"{args.name}.png")
    markdown = table(rows, trained)
    print(markdown)
    return rows, markdown


if __name__ == "__main__":
    main()
