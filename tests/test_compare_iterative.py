"""IMP and LRR in ``sparsify compare``: a registered method run by the iterative driver
(sparsify.app.iterative), one row per run like every other method."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from sparsify.app.cli import read_config
from sparsify.app.compare import job_for, load_method, main, make_grid
from sparsify.app.iterative import main as iterative_main
from sparsify.lightning.iterative import round_sparsities

SHORT = [
    "--trainer.max_epochs=2",
    "--trainer.limit_train_batches=4",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_model_summary=false",
]


def imp_recipe(tmp_path: Path, **arguments) -> Path:
    """The shipped IMP recipe with two rounds: a recipe file of the test's own."""
    path = tmp_path / "imp.yaml"
    recipe = read_config("iterative/imp")
    recipe["iterative_pruning"].update(rounds=2, **arguments)
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_imp_and_lrr_are_registered_and_run_by_the_driver(tmp_path):
    for name, rewind in (("imp", "weights"), ("lrr", "lr")):
        method = load_method(f"method/{name}")
        assert (method.family, method.driver) == ("dense-to-sparse", "iterative")
        assert method.recipe["iterative_pruning"]["rewind"] == rewind
    settings = {"methods": ["method/lrr"], "sparsities": [0.8], "seeds": [3]}
    settings.update(out_dir=str(tmp_path), base=["data/digits"], fit_args=["--x.y=1"])
    (run,) = make_grid(settings)
    job = job_for(run, settings, wandb=False, progress_bar=False)
    driver = yaml.safe_load(job.files["iterative.yaml"])
    assert driver == {"sparsity": 0.8, "rounds": 3, "rewind": "lr", "scope": "global"}
    assert yaml.safe_load(job.files["method.yaml"]) == {"trainer": {"callbacks": []}}
    start = job.command.index("sparsify.app.iterative")
    assert job.command[start:][:4] == [
        "sparsify.app.iterative",
        "--driver",
        str(run.folder / "iterative.yaml"),
        "fit",
    ]
    assert "--x.y=1" in job.command and f"{run.folder / 'method.yaml'}" in job.command


def test_a_grid_of_imp_on_digits_reaches_every_target(tmp_path, capsys):
    out = tmp_path / "cmp"
    methods = [str(imp_recipe(tmp_path))]
    argv = ["--name=imp", "--methods", *methods, "--sparsities", "0.5", "0.8", "--seeds", "0"]
    main([*argv, f"--out={out}", "--wandb=false", "--parallel=2", *SHORT])
    with open(out / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert {(r["method"], r["family"], r["sparsity_target"]) for r in rows} == {
        ("imp", "dense-to-sparse", "0.5"),
        ("imp", "dense-to-sparse", "0.8"),
    }
    for row in rows:
        target = float(row["sparsity_target"])
        assert float(row["sparsity"]) == pytest.approx(target, abs=0.01)
        assert 0 <= float(row["test_acc"]) <= 1
        assert 0 < float(row["inference_flops"]) < 1 and 0 < float(row["train_flops"]) < 1
        (summary,) = Path(row["run_dir"]).glob("**/summary.json")
        rounds = json.loads(summary.read_text())["rounds"]
        assert [r["round"] for r in rounds] == [0, 1, 2]
        measured = [r["sparsity"] for r in rounds]
        assert measured == pytest.approx([0.0, *round_sparsities(target, 2)], abs=0.01)
    assert "| imp | dense-to-sparse | 80 % | 1 |" in (out / "results.md").read_text()


def test_bad_driver_input_is_one_line_and_trains_nothing(tmp_path, capsys):
    recipe = imp_recipe(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["--methods", f"method/gmp+{recipe}", "--sparsities", "0.5", "--seeds", "0"])
    assert exit_info.value.code == 2
    assert "composes with no other recipe" in capsys.readouterr().err
    driver = tmp_path / "driver.yaml"
    driver.write_text(yaml.safe_dump({"sparsity": 0.5, "round": 2}))
    with pytest.raises(SystemExit) as exit_info:
        iterative_main(["--driver", str(driver), "fit", "--config", "method/dense"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparsify: error: unknown key 'round' in ") and "rounds" in err
    assert "\n" not in err and not list(tmp_path.glob("**/*.ckpt"))
