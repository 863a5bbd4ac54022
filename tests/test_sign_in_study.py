"""scripts/sign_in_study.py on a real (tiny) comparison: a PaI recipe with and without Sign-In,
and with Sign-In's rescale once only, each run logging its sign flips."""

import csv

import pytest
import yaml

from helpers import load_script
from sparsify.app.compare import main as compare

SHORT = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=4"]
SHORT += ["--trainer.limit_val_batches=2", "--trainer.enable_model_summary=false"]


def recipes(folder):
    prune = {"class_path": "sparsify.callbacks.PruneAtInit"}
    prune["init_args"] = {"sparsity": 0.9, "score": "random"}
    sign_in = {"class_path": "sparsify.callbacks.SignIn", "init_args": {"every_n_epochs": 1}}
    once = {"class_path": "sparsify.callbacks.SignIn", "init_args": {"every_n_epochs": 1000}}
    paths = []
    for name, callbacks in (
        ("pai", [prune]),
        ("pai_signin", [sign_in, prune]),
        ("pai_signin_once", [once, prune]),
    ):
        paths.append(folder / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return paths


def test_pairs_flips_and_periods_from_a_real_comparison(tmp_path, one_thread):
    grid = tmp_path / "grid.yaml"
    methods = [str(path) for path in recipes(tmp_path)]
    settings = dict(name="tiny", base=["eval/sign_flips"], methods=methods, sparsities=[0.5])
    settings.update(seeds=[0], out_dir=str(tmp_path / "comparisons/tiny"))
    grid.write_text(yaml.safe_dump(settings))
    compare(["--config", str(grid), "--wandb=false", "--parallel=3", *SHORT])
    study = load_script("sign_in_study")

    folder, out = str(tmp_path / "comparisons/tiny"), tmp_path / "out"
    study.main([folder, "--periods", folder, "--target", "0.5", "--out", str(out)])

    with open(tmp_path / "comparisons/tiny/results.csv") as file:
        results = {row["method"]: row for row in csv.DictReader(file)}
    with open(out / "sign_flips.csv") as file:
        flips = list(csv.DictReader(file))
    assert {(row["method"], row["epoch"]) for row in flips} == {
        (method, epoch) for method in results for epoch in ("0", "1")
    }
    last = {row["method"]: float(row["flips"]) for row in flips if row["epoch"] == "1"}
    assert last["pai_signin"] > 0
    assert last["pai_signin"] == pytest.approx(float(results["pai_signin"]["sign_flips"]))
    without, with_ = (100 * float(results[m]["test_acc"]) for m in ("pai", "pai_signin"))
    tables = open(out / "sign_in.md").read()
    row = f"| pai | 50% | 1 | {without:.1f} | {with_:.1f} | {with_ - without:.1f} |"
    assert row in tables  # one seed: values without a spread
    assert "| pai | every epoch (shipped) | 50% | 1 |" in tables
    assert "| pai | once | 50% | 1 |" in tables
    assert open(out / "sign_in.png", "rb").read().startswith(b"\x89PNG")
