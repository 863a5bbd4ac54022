"""scripts/fashion_mnist_report.py: the grids' rows in one CSV, and each claim as paired per-seed
differences, only where both methods ran the same seed at the same target sparsity."""

import csv

from helpers import load_script
from sparsify.app.compare_report import COLUMNS

report = load_script("fashion_mnist_report")


def write_grid(folder, rows):
    folder.mkdir()
    with (folder / "results.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for method, model, target, seed, acc in rows:
            writer.writerow(
                {"method": method, "model": model, "sparsity_target": target, "seed": seed,
                 "test_acc": acc, "family": "dense-to-sparse"}
            )  # fmt: skip


def test_pairs_by_seed_and_target_and_gathers_both_networks(tmp_path):
    write_grid(
        tmp_path / "mlp",
        [
            ("pilot", "lenet_300_100", 0.99, 0, 0.80),
            ("pilot", "lenet_300_100", 0.99, 1, 0.70),
            ("pilot", "lenet_300_100", 0.99, 2, 0.90),  # no GMP run of seed 2: left out
            ("gmp", "lenet_300_100", 0.99, 0, 0.75),
            ("gmp", "lenet_300_100", 0.99, 1, 0.72),
        ],
    )
    write_grid(
        tmp_path / "cnn", [("pilot", "lenet5", 0.95, 0, 0.9), ("gmp", "lenet5", 0.95, 0, 0.8)]
    )
    table = report.main(
        ["--grids", str(tmp_path / "mlp"), str(tmp_path / "cnn"), "--out", str(tmp_path / "out")]
    )
    diffs = report.paired(report.read_rows([tmp_path / "mlp"]), "lenet_300_100", "pilot", "gmp")
    assert [(t, [round(d, 6) for d in ds]) for t, ds in diffs] == [(0.99, [5.0, -2.0])]
    assert (
        "| lenet_300_100 | PILoT at high sparsity | pilot − gmp | 99 % | 2 | +1.50 ± 4.95 | 1/2 |"
        in table
    )
    assert (
        "| lenet5 | PILoT at high sparsity | pilot − gmp | 95 % | 1 | +10.00 ± 0.00 | 1/1 |"
        in table
    )
    grid = list(csv.DictReader((tmp_path / "out" / "fashion_mnist_grid.csv").open()))
    assert list(grid[0])[:5] == ["method", "model", "sparsity_target", "seed", "test_acc"]
    assert {row["model"] for row in grid} == {"lenet_300_100", "lenet5"} and len(grid) == 7
    assert (tmp_path / "out" / "fashion_mnist_lenet5.png").stat().st_size > 0
    accuracy = (tmp_path / "out" / "fashion_mnist_accuracy.md").read_text()
    assert "| method | dense | 99 % |" in accuracy and "| gmp |  | 73.50 ± 2.12 |" in accuracy
    assert "| pilot |  | 80.00 ± 10.00 |" in accuracy  # all three seeds, paired or not
