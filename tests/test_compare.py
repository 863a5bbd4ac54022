import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from sparsify.app.compare import load_method, main, with_sparsity
from sparsify.app.compare_report import write_report

SHORT = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=4",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_model_summary=false",
]
PNG = b"\x89PNG\r\n\x1a\n"


def pai_recipe(tmp_path):
    """A pruning-at-initialization recipe of the test's own: random scores, global threshold."""
    path = tmp_path / "pai_random.yaml"
    callback = {"class_path": "sparsify.callbacks.prune_at_init.PruneAtInit"}
    callback["init_args"] = {"sparsity": 0.9, "score": "random"}
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    return path


def test_grid_resumes_after_kill_and_reports(tmp_path, capsys):
    """GMP and random PaI at 50 / 80 %, one seed: the runner is killed (with its run) during
    the second run; the rerun keeps the first, redoes the second from scratch, runs the rest
    and writes the table, the summary and both plots."""
    out = tmp_path / "cmp"
    methods = ["method/gmp", str(pai_recipe(tmp_path))]
    argv = ["--name=test", "--methods", *methods, "--sparsities", "0.5", "0.8", "--seeds", "0"]
    argv += [f"--out={out}", "--wandb=false", *SHORT]
    code = f"from sparsify.app.compare import main; main({argv!r})"
    with open(tmp_path / "runner.err", "w") as err:
        runner = subprocess.Popen(
            [sys.executable, "-c", code], stderr=err, stdout=err, start_new_session=True
        )
    first, interrupted = out / "runs/gmp/s0.5/seed0", out / "runs/gmp/s0.8/seed0"
    deadline = time.time() + 120
    while not (list(first.glob("**/summary.json")) and interrupted.is_dir()):
        assert runner.poll() is None and time.time() < deadline, (
            tmp_path / "runner.err"
        ).read_text()
        time.sleep(0.05)
    os.killpg(runner.pid, signal.SIGKILL)  # the runner and the run it started, like a lost job
    runner.wait()
    assert not list(interrupted.glob("**/summary.json"))
    (interrupted / "stale").write_text("left by the interrupted attempt")
    (first_summary,) = first.glob("**/summary.json")
    kept = first_summary.stat().st_mtime_ns

    main([*argv, "--report-only"])  # a report of the grid so far runs and deletes nothing
    assert "1 of 4 runs finished" in capsys.readouterr().out
    with open(out / "results.csv") as file:
        assert [(r["method"], r["sparsity_target"]) for r in csv.DictReader(file)] == [
            ("gmp", "0.5")
        ]
    assert (interrupted / "stale").exists() and not (out / "runs/pai_random").exists()

    main([*argv, "--parallel=2"])

    bar = capsys.readouterr().err
    assert "1/4" in bar and "4/4" in bar  # resumed with one run done, of four
    assert first_summary.stat().st_mtime_ns == kept
    assert not (interrupted / "stale").exists() and list(interrupted.glob("**/summary.json"))
    with open(out / "results.csv") as file:
        rows = list(csv.DictReader(file))
    got = {(r["method"], r["family"], r["sparsity_target"], r["seed"]) for r in rows}
    assert got == {
        ("gmp", "dense-to-sparse", "0.5", "0"),
        ("gmp", "dense-to-sparse", "0.8", "0"),
        ("pai_random", "PaI", "0.5", "0"),
        ("pai_random", "PaI", "0.8", "0"),
    }
    for row in rows:
        target = float(row["sparsity_target"])
        assert float(row["sparsity"]) == pytest.approx(target, abs=0.01)
        assert 0 <= float(row["test_acc"]) <= 1 and float(row["wall_time_s"]) > 0
        assert 0 < float(row["inference_flops"]) < 1 and 0 < float(row["train_flops"]) < 1
    table = (out / "results.md").read_text()
    assert "| gmp | dense-to-sparse | 80 % | 1 |" in table
    assert "| pai_random | PaI | 50 % | 1 |" in table
    for name in ("accuracy_vs_sparsity.png", "accuracy_vs_flops.png", "layer_density.png"):
        image = (out / name).read_bytes()
        assert image.startswith(PNG) and len(image) > 10_000


def test_report_mean_std_dense_line_and_density_plot(tmp_path):
    def row(method, family, target, seed, acc):
        density = {"conv": 0.5 * (1 - (target or 0)), "fc": 1 - (target or 0)}
        values = dict(method=method, family=family, sparsity_target=target, seed=seed)
        values.update(test_acc=acc, test_acc_before_pruning=None, sparsity=target or 0.0)
        values.update(sign_flips=None, wall_time_s=10.0, run_dir="r", layer_density=density)
        values.update(inference_flops=1 - (target or 0) / 2, train_flops=1 - (target or 0) / 4)
        return values

    rows = [
        row("dense", "reference", None, 0, 0.98),
        row("dense", "reference", None, 1, 0.96),
        row("gmp", "dense-to-sparse", 0.9, 0, 0.95),
        row("gmp", "dense-to-sparse", 0.9, 1, 0.93),
        row("snip", "PaI", 0.9, 0, 0.90),
        row("snip", "PaI", 0.99, 0, 0.50),
    ]
    written = write_report(rows, tmp_path, density_at=0.9)
    assert [p.name for p in written] == [
        "results.csv",
        "results.md",
        "accuracy_vs_sparsity.png",
        "accuracy_vs_flops.png",
        "layer_density.png",
    ]
    table = (tmp_path / "results.md").read_text()
    dense = "| dense | reference | — | 2 | 97.00 ± 1.41 |  | 0.00 ± 0.00 | 1.000 ± 0.000 | "
    assert dense + "1.000 ± 0.000 |  | 10 ± 0 |" in table
    assert "| gmp | dense-to-sparse | 90 % | 2 | 94.00 ± 1.41 |" in table
    assert "| snip | PaI | 99 % | 1 | 50.00 |  | 99.00 | 0.505 | 0.752 |" in table
    with open(tmp_path / "results.csv") as file:
        (snip,) = [r for r in csv.DictReader(file) if r["sparsity_target"] == "0.99"]
    assert float(snip["inference_flops"]) == 0.505 and float(snip["train_flops"]) == 0.7525
    for name in ("layer_density.png", "accuracy_vs_flops.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)


def test_sparsity_goes_to_every_callback_that_takes_one(tmp_path):
    recipe = tmp_path / "two_targets.yaml"
    callbacks = [
        {"class_path": "sparsify.callbacks.Reparametrize", "init_args": {"beta": 1.0}},
        {"class_path": "sparsify.callbacks.magnitude_pruning.MagnitudePruning"},
        {"class_path": "sparsify.callbacks.PruneAtEnd", "init_args": {"sparsity": 0.9}},
    ]
    recipe.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    method = load_method(str(recipe))
    assert method.family == "dense-to-sparse" and method.label == "two_targets"
    result = with_sparsity(method, 0.97)["trainer"]["callbacks"]
    assert result[0]["init_args"] == {"beta": 1.0}
    assert result[1]["init_args"] == {"final_sparsity": 0.97}
    assert result[2]["init_args"] == {"sparsity": 0.97}
    assert method.recipe["trainer"]["callbacks"][2]["init_args"]["sparsity"] == 0.9
    assert load_method(str(pai_recipe(tmp_path))).family == "PaI"
    assert load_method("method/dense").family == "reference"


def _file(tmp_path, **settings):
    path = tmp_path / "comparison.yaml"
    path.write_text(yaml.safe_dump(settings))
    return f"--config={path}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--methods", "method/gmp", "method/nope", "--sparsities", "0.9", "--seeds", "0"],
            "unknown method 'method/nope': not a file, nor a shipped recipe (",
        ),
        (
            ["--methods", "method/gmp", "--sparsities", "0.9", "1.0", "--seeds", "0"],
            "sparsity=1.0 is invalid: must be in [0, 1)",
        ),
        (
            ["--methods", "method/gmp", "--sparsities", "-0.5", "--seeds", "0"],
            "sparsity=-0.5 is invalid: must be in [0, 1)",
        ),
        (
            lambda tmp: [_file(tmp, methods=["method/gmp"], sparsities=[0.9], seeds=[])],
            "empty grid: no seeds given",
        ),
        (
            lambda tmp: [_file(tmp, methods=["method/gmp"], seeds=[0])],
            "empty grid: no sparsities given",
        ),
        (
            lambda tmp: [_file(tmp, methods=["method/gmp"], sparsities=[0.9], seeds=[0], x=1)],
            "unknown key 'x'",
        ),
        (
            ["--methods", "method/gmp", "--sparsities", "0.9", "--seeds", "0", "--max_epochs=3"],
            "unrecognized argument --max_epochs=3",
        ),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, argv, message):
    argv = argv(tmp_path) if callable(argv) else argv
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, f"--out={tmp_path / 'out'}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsify: error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "out").exists()


def test_out_folder_of_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "comparison.json").write_text(json.dumps({"base": [], "fit_args": SHORT}))
    argv = ["--methods", "method/gmp", "--sparsities", "0.9", "--seeds", "0", f"--out={out}"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--trainer.max_epochs=2"])
    assert exit_info.value.code == 2
    assert "holds runs made with other base configs or flags" in capsys.readouterr().err
    assert os.listdir(out) == ["comparison.json"]


def test_runs_at_once_share_the_cores(monkeypatch):
    from sparsify.app.launchers.local import thread_limits

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert thread_limits(1) == {}
    assert thread_limits(2) == {"OMP_NUM_THREADS": "4"}
    assert thread_limits(16) == {"OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_limits(2) == {}  # the user's choice stands


def test_plots_and_table_go_to_wandb_in_the_comparisons_group(tmp_path):
    from wandb_records import read_run

    from sparsify.app.compare_report import log_to_wandb

    rows = [
        dict(
            method=m,
            family=f,
            sparsity_target=t,
            seed=0,
            test_acc=a,
            test_acc_before_pruning=None,
            sparsity=t or 0.0,
            sign_flips=None,
            wall_time_s=1.0,
            run_dir="r",
            layer_density={"fc": 1 - (t or 0)},
            inference_flops=1 - (t or 0),
            train_flops=1 - (t or 0) / 2,
        )
        for m, f, t, a in [("dense", "reference", None, 0.97), ("gmp", "dense-to-sparse", 0.9, 0.9)]
    ]
    write_report(rows, tmp_path, density_at=0.9)
    run = read_run(log_to_wandb(tmp_path, "mygrid", project="myproject"))
    assert run["group"] == "mygrid" and run["project"] == "myproject"
    (logged,) = run["history"]
    for plot in ("accuracy_vs_sparsity", "accuracy_vs_flops", "layer_density"):
        assert logged[f"{plot}/_type"] == "image-file", plot
    assert logged["results/_type"] == "table-file" and logged["results/nrows"] == 2
