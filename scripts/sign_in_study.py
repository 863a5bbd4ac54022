"""Sign-In where pruning at initialization should lag (docs/results.md): each PaI or DST method
with and without Sign-In, their accuracy and their sign flips over training, from the folders of
``sparsify compare`` runs that logged ``signs/flips_since_start`` (``eval/sign_flips``); and
Sign-In's rescale period from a second comparison of ``<method>_signin_<period>`` recipes.

    python scripts/sign_in_study.py comparisons/digits32_resnet20 \
        --periods comparisons/signin_period --out docs/results

Writes ``sign_flips.csv`` (method, sparsity_target, seed, epoch, flips), ``sign_in.md`` (the
tables: mean ± sample std over seeds, the value alone for one seed) and ``sign_in.png`` (flips
over the epochs at ``--target``, and the accuracy Sign-In adds at each sparsity).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

from sparsify.app.compare_report import mean_std_text

FLIPS = "signs/flips_since_start"
SUFFIX = "_signin"


def results(compare_dir: Path) -> list[dict]:
    """The rows of a comparison's ``results.csv``, each with ``run`` (its folder under
    ``compare_dir``, wherever that has moved) and ``trace`` (``[(epoch, flips)]`` from its
    metrics)."""
    rows = list(csv.DictReader((compare_dir / "results.csv").open()))
    for row in rows:
        parts = Path(row["run_dir"]).parts  # <out_dir>/runs/<method>/…/seed<n>
        inside = len(parts) - 1 - parts[::-1].index("runs")
        row["run"] = compare_dir.joinpath(*parts[inside:])
        row["trace"] = flips_trace(row["run"])
    return rows


def flips_trace(run_dir: Path) -> list[tuple[int, float]]:
    (metrics,) = run_dir.glob("lightning_logs/version_*/metrics.csv")
    return [
        (int(row["epoch"]), float(row[FLIPS]))
        for row in csv.DictReader(metrics.open())
        if row.get(FLIPS)
    ]


def by_method_and_target(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["method"], row["sparsity_target"])].append(row)
    return groups


def final_flips(group: list[dict]) -> list[float]:
    return [row["trace"][-1][1] for row in group if row["trace"]]


def pairs(rows: list[dict]) -> list[tuple[str, str, list[dict], list[dict]]]:
    """``(method, target, runs without Sign-In, runs with)`` for every method that has both."""
    groups = by_method_and_target(rows)
    return [
        (method, target, group, groups[(method + SUFFIX, target)])
        for (method, target), group in groups.items()
        if (method + SUFFIX, target) in groups
    ]


def accuracy_gains(without: list[dict], with_: list[dict]) -> list[float]:
    """Test accuracy with Sign-In minus without, seed by seed, for the seeds both have."""
    by_seed = {row["seed"]: float(row["test_acc"]) for row in without}
    return [float(r["test_acc"]) - by_seed[r["seed"]] for r in with_ if r["seed"] in by_seed]


def pairs_table(rows: list[dict]) -> str:
    lines = [
        "| method | target | seeds | test acc without (%) | with Sign-In (%) | difference "
        "(points) | sign flips without (%) | with Sign-In (%) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, target, without, with_ in pairs(rows):
        gains = accuracy_gains(without, with_)
        lines.append(
            f"| {method} | {float(target):.0%} | {len(with_)} "
            f"| {mean_std_text([float(r['test_acc']) for r in without])} "
            f"| {mean_std_text([float(r['test_acc']) for r in with_])} | {mean_std_text(gains)} "
            f"| {mean_std_text(final_flips(without))} | {mean_std_text(final_flips(with_))} |"
        )
    return "\n".join(lines)


def periods_table(period_rows: list[dict], rows: list[dict]) -> str:
    """Each ``<method>_signin_<period>`` recipe beside the shipped ``<method>_signin`` (every
    epoch) at the same target."""
    groups = by_method_and_target(period_rows)
    shipped = by_method_and_target(rows)
    lines = [
        "| method | rescale | target | seeds | test acc (%) | sign flips (%) |",
        "|---|---|---|---|---|---|",
    ]
    for method in sorted({m.split(SUFFIX)[0] for m, _ in groups}):
        for target in sorted({t for m, t in groups if m.startswith(method + SUFFIX)}):
            variants = {"every epoch (shipped)": shipped.get((method + SUFFIX, target), [])}
            for name, group in sorted(groups.items()):
                if name[1] == target and name[0].startswith(method + SUFFIX + "_"):
                    variants[name[0].removeprefix(method + SUFFIX + "_").replace("_", " ")] = group
            for period, group in variants.items():
                if group:
                    accuracy = mean_std_text([float(r["test_acc"]) for r in group])
                    lines.append(
                        f"| {method} | {period} | {float(target):.0%} | {len(group)} "
                        f"| {accuracy} | {mean_std_text(final_flips(group))} |"
                    )
    return "\n".join(lines)


def plot(rows: list[dict], target: str, path: Path) -> None:
    """Left: mean sign flips over the epochs at ``target``, with Sign-In solid, without dashed,
    one color per method. Right: the accuracy Sign-In adds (mean ± std over seeds of the
    per-seed difference) at each sparsity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (flips_ax, gain_ax) = plt.subplots(1, 2, figsize=(12, 4))
    paired = pairs(rows)
    methods = list(dict.fromkeys(method for method, *_ in paired))
    for method, run_target, without, with_ in paired:
        color = f"C{methods.index(method)}"
        if run_target == target:
            for group, style, label in ((with_, "-", f"{method}{SUFFIX}"), (without, "--", method)):
                epochs = sorted({e for row in group for e, _ in row["trace"]})
                means = [
                    100 * statistics.mean(f for row in group for e, f in row["trace"] if e == epoch)
                    for epoch in epochs
                ]
                flips_ax.plot(epochs, means, style, color=color, label=label)
    for method in methods:
        points = []
        for name, run_target, without, with_ in paired:
            if name == method:
                gains = [100 * gain for gain in accuracy_gains(without, with_)]
                std = statistics.stdev(gains) if len(gains) > 1 else 0.0
                points.append((float(run_target), statistics.mean(gains), std))
        points.sort()
        gain_ax.errorbar(
            [100 * t for t, _, _ in points],
            [g for _, g, _ in points],
            yerr=[s for _, _, s in points],
            color=f"C{methods.index(method)}",
            marker="o",
            capsize=3,
            label=method,
        )
    flips_ax.set(
        xlabel="epoch",
        ylabel="weights whose sign changed (%)",
        title=f"sign flips since the start at {float(target):.0%} (solid: with Sign-In)",
    )
    gain_ax.axhline(0, color="gray", linewidth=0.8)
    gain_ax.set(
        xlabel="target sparsity (%)",
        ylabel="test accuracy, with − without (points)",
        title="what Sign-In adds",
    )
    for ax in (flips_ax, gain_ax):
        ax.grid(alpha=0.3)
    flips_ax.legend(fontsize="x-small", ncol=2, loc="lower right")
    gain_ax.legend(fontsize="small")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison", type=Path, help="a sparsify compare folder")
    parser.add_argument("--periods", type=Path, help="a compare folder of rescale periods")
    parser.add_argument("--target", default="0.98", help="sparsity of the flips plot")
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    rows = results(args.comparison)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "sign_flips.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["method", "sparsity_target", "seed", "epoch", "flips"])
        for row in rows:
            for epoch, flips in row["trace"]:
                writer.writerow([row["method"], row["sparsity_target"], row["seed"], epoch, flips])
    text = pairs_table(rows)
    if args.periods:
        text += "\n\n" + periods_table(results(args.periods), rows)
    (args.out / "sign_in.md").write_text(text + "\n")
    plot(rows, args.target, args.out / "sign_in.png")
    print(text)


if __name__ == "__main__":
    main()
