"""The Fashion-MNIST answers (docs/results.md, "Fashion-MNIST"): gathers the grids' rows into one
CSV, plots test accuracy against sparsity for each network, tabulates it (mean ± std over seeds,
``<name>_accuracy.md``), and prints the papers' claims as paired per-seed differences (method
A − method B on the same seed and target sparsity, ``<name>_claims.md``).

    python scripts/fashion_mnist_report.py \\
        --grids ../comparisons/fashion_mnist ../comparisons/fashion_mnist_lenet5 --out docs/results

Each grid folder holds the ``results.csv`` that ``sparsify compare`` writes. A pair is reported
at the sparsities where both methods have seeds in common; unfinished runs are left out, so the
script can be run while a grid is still running.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sparsify.app.compare_report import COLUMNS, mean_std, mean_std_text, plot_accuracy

# (claim, method A, method B): each row of the claims table is A − B, paired by seed.
CLAIMS = (
    ("PILoT at high sparsity", "pilot", "gmp"),
    ("PILoT at high sparsity", "pilot", "spred"),
    ("PaI against dense-to-sparse", "pai_random_erk", "gmp"),
    ("PaI against dense-to-sparse", "snip", "gmp"),
    ("PaI against dense-to-sparse", "grasp", "gmp"),
    ("PaI against dense-to-sparse", "synflow", "gmp"),
    ("Sign-In's gain", "pai_random_erk_signin", "pai_random_erk"),
    ("Sign-In's gain", "synflow_signin", "synflow"),
    ("Sign-In's gain", "rigl_signin", "rigl"),
    ("the switch-off", "wd_switch_off", "spred"),
    ("the switch-off", "wd_switch_off", "gmp"),
)


def read_rows(folders: list[Path]) -> list[dict]:
    rows = []
    for folder in folders:
        path = folder / "results.csv"
        if not path.is_file():
            continue
        for row in csv.DictReader(path.open()):
            row["seed"] = int(row["seed"])
            row["sparsity_target"] = (
                float(row["sparsity_target"]) if row["sparsity_target"] else None
            )
            for key in ("test_acc", "val_acc", "sparsity", "inference_flops", "train_flops"):
                row[key] = float(row[key]) if row.get(key) else None
            rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def paired(rows: list[dict], model: str, a: str, b: str) -> list[tuple[float, list[float]]]:
    """``[(sparsity, [acc_A − acc_B for each common seed])]`` on ``model``, in percent points."""
    acc = {
        (r["method"], r["sparsity_target"], r["seed"]): r["test_acc"]
        for r in rows
        if r["model"] == model and r["test_acc"] is not None
    }
    targets = sorted({t for m, t, _ in acc if m == a and t is not None})
    out = []
    for target in targets:
        seeds = sorted(s for m, t, s in acc if m == a and t == target and (b, t, s) in acc)
        if seeds:
            out.append((target, [100 * (acc[a, target, s] - acc[b, target, s]) for s in seeds]))
    return out


def accuracy_table(rows: list[dict], model: str) -> str:
    """Test accuracy (%) of every method on ``model``, mean ± std over seeds (the mean alone for
    one seed), one column per target sparsity (``method/dense``, which has none, in its own
    column)."""
    cells: dict[tuple[str, float | None], list[float]] = {}
    for r in rows:
        if r["model"] == model and r["test_acc"] is not None:
            cells.setdefault((r["method"], r["sparsity_target"]), []).append(r["test_acc"])
    targets = sorted({t for _, t in cells if t is not None})
    header = ["method", "dense", *(f"{100 * t:g} %" for t in targets)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method in dict.fromkeys(m for m, _ in cells):
        row = [method]
        for target in [None, *targets]:
            row.append(mean_std_text(cells.get((method, target), []), digits=2))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def claims_table(rows: list[dict]) -> str:
    lines = [
        "| network | claim | A − B | sparsity | seeds | mean ± std (points) | A ahead |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        for claim, a, b in CLAIMS:
            for target, diffs in paired(rows, model, a, b):
                ahead = sum(d > 0 for d in diffs)
                mean, std = mean_std(diffs)
                lines.append(
                    f"| {model} | {claim} | {a} − {b} | {100 * target:g} % | {len(diffs)} | "
                    f"{mean:+.2f} ± {std:.2f} | {ahead}/{len(diffs)} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--name", default="fashion_mnist")
    args = parser.parse_args(argv)
    rows = read_rows(args.grids)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / f"{args.name}_grid.csv")
    for model in dict.fromkeys(r["model"] for r in rows):
        plot_accuracy(
            [r for r in rows if r["model"] == model], args.out / f"{args.name}_{model}.png"
        )
    table = claims_table(rows)
    (args.out / f"{args.name}_claims.md").write_text(table + "\n")
    accuracy = [
        f"### {model}\n\n{accuracy_table(rows, model)}\n"
        for model in dict.fromkeys(r["model"] for r in rows)
    ]
    (args.out / f"{args.name}_accuracy.md").write_text("\n".join(accuracy))
    print(table)
    return table


if __name__ == "__main__":
    main()
