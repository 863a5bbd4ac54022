"""Launchers of ``sparsify compare``: this machine's GPUs (a mocked device count), SLURM through
submitit (dry run, and its local executor), Ray (a local cluster on CPU); every launcher gives
the same run folders and ``results.csv``, reports a failed run with its log and goes on."""

import csv
import json
import sys

import pytest
import yaml

from sparsify.app.compare import main, wandb_project
from sparsify.app.launchers import Job, LaunchOptions
from sparsify.app.launchers.local import DeviceSlots, run_local

SHORT = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=4",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_model_summary=false",
    "--trainer.accelerator=cpu",  # the same on a machine with GPUs
]


class Progress:
    def __init__(self):
        self.done, self.notes = [], []

    def started(self, running):
        pass

    def finished(self, job, ok, running):
        self.done.append((job.title, ok))

    def note(self, line):
        self.notes.append(line)


# A stand-in for ``sparsify fit``: notes what it was given, stays a while, and finishes.
PROBE = """
import json, os, sys, time
folder = sys.argv[1]
start = time.time()
time.sleep(0.6)
seen = {"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}
open(os.path.join(folder, "seen.json"), "w").write(json.dumps(seen))
open(os.path.join(folder, "summary.json"), "w").write("{}")
"""


def probe_jobs(tmp_path, count):
    return [
        Job(
            f"run{i}",
            tmp_path / f"run{i}",
            [sys.executable, "-c", PROBE, str(tmp_path / f"run{i}")],
        )
        for i in range(count)
    ]


def seen(jobs):
    return [json.loads((job.folder / "seen.json").read_text()) for job in jobs]


def most_at_once(records, gpu=None):
    """The largest number of runs (on ``gpu``) that were running at the same moment."""
    chosen = [r for r in records if gpu is None or gpu in r["gpus"].split(",")]
    return max(sum(o["start"] <= r["start"] < o["end"] for o in chosen) for r in chosen)


def test_device_slots_spread_then_pack_then_queue():
    slots = DeviceSlots(["0", "1", "2"], devices_per_run=1, runs_per_gpu=2)
    taken = [slots.take() for _ in range(6)]
    assert taken == [["0"], ["1"], ["2"], ["0"], ["1"], ["2"]]
    assert slots.take() is None  # the seventh run waits
    slots.give_back(["1"])
    assert slots.take() == ["1"]
    pairs = DeviceSlots(["4", "5", "6", "7"], devices_per_run=2, runs_per_gpu=1)
    assert [pairs.take(), pairs.take(), pairs.take()] == [["4", "5"], ["6", "7"], None]


def test_local_launcher_gives_each_run_its_own_gpus(tmp_path, monkeypatch):
    """Eight runs on three mocked GPUs, two runs a GPU: every run sees one GPU, never more than
    two runs share one, and the rest queue; then two GPUs a run on four GPUs."""
    monkeypatch.setattr("sparsify.app.launchers.local.visible_gpus", lambda: ["0", "1", "2"])
    jobs = probe_jobs(tmp_path / "packed", 8)
    progress = Progress()
    failed = run_local(jobs, LaunchOptions(runs_per_gpu=2), progress)
    assert failed == [] and sorted(progress.done) == [(f"run{i}", True) for i in range(8)]
    records = seen(jobs)
    assert {r["gpus"] for r in records} == {"0", "1", "2"}
    assert all(most_at_once(records, gpu) <= 2 for gpu in "012")
    assert most_at_once(records) <= 6
    assert all((job.folder / "run.json").is_file() for job in jobs)

    monkeypatch.setattr("sparsify.app.launchers.local.visible_gpus", lambda: ["4", "5", "6", "7"])
    jobs = probe_jobs(tmp_path / "pairs", 4)
    assert run_local(jobs, LaunchOptions(devices_per_run=2), Progress()) == []
    records = seen(jobs)
    assert {r["gpus"] for r in records} <= {"4,5", "6,7"}
    assert all(most_at_once(records, gpu) == 1 for gpu in "4567")


def test_local_launcher_without_gpus_sets_no_devices(tmp_path, monkeypatch):
    monkeypatch.setattr("sparsify.app.launchers.local.visible_gpus", lambda: [])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    jobs = probe_jobs(tmp_path, 2)
    assert run_local(jobs, LaunchOptions(), Progress()) == []
    records = seen(jobs)
    assert [r["gpus"] for r in records] == [None, None]
    assert most_at_once(records) == 1  # parallel defaults to 1 on CPU
    monkeypatch.setattr("sparsify.app.launchers.local.visible_gpus", lambda: ["0", "1"])
    jobs = probe_jobs(tmp_path / "hidden", 1)
    assert run_local(jobs, LaunchOptions(devices_per_run=0), Progress()) == []
    assert seen(jobs)[0]["gpus"] == ""  # devices_per_run 0: CPU runs, GPUs hidden


def broken_recipe(tmp_path):
    """A recipe that passes compare's checks but fails in ``sparsify fit`` (unknown argument)."""
    path = tmp_path / "broken.yaml"
    callback = {"class_path": "sparsify.callbacks.PruneAtEnd"}
    callback["init_args"] = {"sparsity": 0.9, "no_such_argument": 1}
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    return path


def grid_argv(tmp_path, out, *launch):
    argv = ["--name=grid", "--methods", "method/gmp", str(broken_recipe(tmp_path))]
    argv += ["--sparsities", "0.5", "--seeds", "0", f"--out={out}", "--wandb=false", *SHORT]
    return [*argv, *launch]


def run_grid(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err


def results(out):
    """``results.csv`` without the columns that differ by nature (folder, wall time)."""
    with open(out / "results.csv") as file:
        rows = list(csv.DictReader(file))
    return [{k: v for k, v in row.items() if k not in ("run_dir", "wall_time_s")} for row in rows]


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    """GMP at 50 % and a broken recipe, run by the local launcher once for the module."""
    tmp_path = tmp_path_factory.mktemp("local")
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        with pytest.raises(SystemExit) as exit_info:
            main(grid_argv(tmp_path, out))
    return out, exit_info.value.code


def test_local_grid_reports_the_failed_run_with_its_log_and_finishes_the_others(local_grid):
    out, code = local_grid
    assert code == 1
    (row,) = results(out)
    assert row["method"] == "gmp" and float(row["sparsity"]) == pytest.approx(0.5, abs=0.01)
    log = out / "runs/broken/s0.5/seed0/fit.log"
    assert "no_such_argument" in log.read_text()


def test_slurm_array_with_submitits_local_executor_gives_the_local_results(
    local_grid, tmp_path, capsys, monkeypatch
):
    """The same grid as one job array (submitit's local executor, as no SLURM is here): the same
    folders and results; the failed run is named with its log; a re-launch runs only it."""
    pytest.importorskip("submitit")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    local_out, _ = local_grid
    out = tmp_path / "out"
    argv = grid_argv(tmp_path, out, "--launcher=slurm", "--time=5")
    code, err = run_grid(argv, capsys)
    assert code == 1 and "submitit's local executor" in err
    assert f"broken s=0.5 seed=0 failed, see {out}/runs/broken/s0.5/seed0/fit.log" in err
    assert results(out) == results(local_out)
    assert sorted(p.relative_to(out) for p in out.glob("runs/*/*/*")) == sorted(
        p.relative_to(local_out) for p in local_out.glob("runs/*/*/*")
    )
    (summary,) = out.glob("runs/gmp/**/summary.json")
    kept = summary.stat().st_mtime_ns
    code, err = run_grid(argv, capsys)
    assert code == 1 and "1/2" in err  # one run done already: only the broken one ran again
    assert summary.stat().st_mtime_ns == kept


def test_slurm_dry_run_prints_the_array_and_submits_nothing(tmp_path, capsys):
    pytest.importorskip("submitit")
    out = tmp_path / "out"
    argv = grid_argv(tmp_path, out, "--launcher=slurm", "--dry-run", "--partition=gpu")
    argv += ["--time=90", "--devices-per-run=2", "--nodes=2", "--cpus-per-run=8", "--parallel=1"]
    main(argv)
    printed = capsys.readouterr().out
    for line in (
        "#SBATCH --array=0-1%1",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --ntasks-per-node=2",
        "#SBATCH --cpus-per-task=8",
        "# array index 0: gmp s=0.5 seed=0",
        "# array index 1: broken s=0.5 seed=0",
    ):
        assert line in printed
    assert f"--trainer.default_root_dir={out}/runs/gmp/s0.5/seed0" in printed
    assert not out.exists()


def test_slurm_dry_run_of_a_finished_grid_has_nothing_to_submit(tmp_path, capsys):
    pytest.importorskip("submitit")
    out = tmp_path / "out"
    argv = grid_argv(tmp_path, out, "--launcher=slurm", "--dry-run")
    main(argv)  # nothing done yet: the whole array, at most all of it at a time
    assert "#SBATCH --array=0-1%2" in capsys.readouterr().out
    for method in ("gmp", "broken"):  # both runs finished: a summary.json in each run folder
        folder = out / "runs" / method / "s0.5" / "seed0" / "lightning_logs" / "version_0"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"test_acc": 0.9, "sparsity": 0.5}))
    before = sorted(out.rglob("*"))
    main(argv)  # returns: exit code 0
    assert capsys.readouterr().out == "nothing to submit: all 2 runs are done\n"
    assert sorted(out.rglob("*")) == before


def test_ray_tasks_on_a_local_cluster_give_the_local_results(local_grid, tmp_path, capsys):
    """The same grid as Ray tasks on a local Ray cluster started for it (two CPUs)."""
    ray = pytest.importorskip("ray")
    local_out, _ = local_grid
    out = tmp_path / "out"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code, err = run_grid(grid_argv(tmp_path, out, "--launcher=ray"), capsys)
        assert ray.is_initialized()  # a cluster it did not start is left running
    finally:
        ray.shutdown()
    assert code == 1
    assert f"broken s=0.5 seed=0 failed, see {out}/runs/broken/s0.5/seed0/fit.log" in err
    assert results(out) == results(local_out)


@pytest.mark.parametrize(
    "launch, message",
    [
        (["--launcher=pbs"], "argument --launcher: invalid choice: 'pbs'"),
        (["--address=auto"], "address='auto' is for --launcher ray only"),
        (["--partition=gpu"], "slurm settings (partition) are for --launcher slurm only"),
        (["--runs-per-gpu=0"], "runs_per_gpu=0 is invalid: must be an integer >= 1"),
        (
            ["--runs-per-gpu=2", "--devices-per-run=2"],
            "packing runs on a GPU is for runs of one GPU",
        ),
        (["--devices-per-run=1"], "devices_per_run=1 is invalid: 0 GPU(s) visible here"),
    ],
)
def test_bad_launch_settings_one_line_exit_2(tmp_path, capsys, monkeypatch, launch, message):
    monkeypatch.setattr("sparsify.app.launchers.local.visible_gpus", lambda: [])
    with pytest.raises(SystemExit) as exit_info:
        main(grid_argv(tmp_path, tmp_path / "out", *launch))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_wandb_project_is_the_one_the_base_config_names(tmp_path):
    config = tmp_path / "tracking.yaml"
    logger = {"class_path": "sparsify.app.tracking.WandbLogger", "init_args": {"project": "mine"}}
    config.write_text(yaml.safe_dump({"trainer": {"logger": logger}}))
    settings = {"base": [str(config)], "fit_args": []}
    assert wandb_project(settings) == "mine"
    settings["fit_args"] = ["--trainer.logger.init_args.project=flagged"]
    assert wandb_project(settings) == "flagged"
    assert wandb_project({"base": [], "fit_args": []}) == "sparsify"  # defaults.yaml's
