"""W&B tracking: a real offline run read back from the files W&B wrote; the mode chosen without
credentials or network; the switch that turns it off; atomic checkpoints."""

import json
import subprocess
import sys

import pytest
import torch
from wandb_records import read_run

from sparsify.app.cli import main
from sparsify.app.tracking import resolve_mode
from sparsify.errors import ConfigError
from sparsify.models import create_model

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_offline_run_holds_config_metrics_summary_and_sparse_model(tmp_path, capsys):
    main(["fit", "--trainer.max_epochs=4", f"--trainer.default_root_dir={tmp_path}", *QUIET])
    out = capsys.readouterr().out
    (offline,) = tmp_path.glob("wandb/offline-run-*")
    assert f"wandb sync {offline}" in out
    run = read_run(offline)

    config = run["config"]
    assert config["model"]["init_args"]["backbone"] == "cnn_digits"
    assert config["data"]["class_path"] == "sparsify.datamodules.DigitsDataModule"
    callbacks = [c["class_path"].rsplit(".", 1)[1] for c in config["trainer"]["callbacks"]]
    assert {"Reparametrize", "PILoT", "PruneAtEnd"} <= set(callbacks)

    logged = {key for row in run["history"] for key in row}
    for key in ("train/loss_step", "val/acc", "test/acc", "pilot/alpha"):
        assert key in logged, key
    assert {"sparsity/global", "sparsity/model.0", "sparsity/model.14"} <= logged
    sparsity = [row["sparsity/global"] for row in run["history"] if "sparsity/global" in row]
    assert sparsity[0] == 0.0 and sparsity[-1] == pytest.approx(0.9, abs=1e-3)

    (folder,) = tmp_path.glob("sparsify/*")
    summary = json.loads((folder / "summary.json").read_text())
    assert run["summary"]["final/test_acc"] == pytest.approx(summary["test_acc"])
    assert run["summary"]["final/sparsity"] == pytest.approx(summary["sparsity"])
    for key in ("inference_flops", "dense_inference_flops", "train_flops"):
        assert run["summary"][f"final/{key}"] == pytest.approx(summary[key]), key
    # pruned to 90 % for the last 3 of 4 epochs: about 1/4 + 3/4 · 0.1 of dense training
    assert 0.1 < summary["inference_flops"] / summary["dense_inference_flops"] < 0.5
    assert 0.25 < summary["train_flops"] < 0.25 + 0.75 * 0.5
    assert "flops/train_relative" in logged
    assert (folder / "config.yaml").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()

    (artifact,) = [a for a in run["artifacts"] if a["type"] == "model"]
    assert artifact["name"] == f"sparse-model-{folder.name}"
    assert artifact["files"] == ["sparse_model.pt"]
    exported = torch.load(folder / "sparse_model.pt")
    plain = create_model("cnn_digits", num_classes=10)
    state = {k.removeprefix("model."): v for k, v in exported["state_dict"].items()}
    plain.load_state_dict(state)  # an ordinary model, no sparsify parametrization
    zeros = sum(int((p == 0).sum()) for n, p in plain.named_parameters() if n.endswith("weight"))
    assert zeros > 0 and set(exported["masks"]) == set(summary["layer_density"])


def test_wandb_false_writes_nothing_to_wandb(tmp_path):
    main(
        [
            "fit",
            "--config=method/dense",
            "--trainer.max_epochs=1",
            "--wandb=false",
            f"--trainer.default_root_dir={tmp_path}",
            *QUIET,
        ]
    )
    assert not list(tmp_path.rglob("*wandb*"))
    assert list(tmp_path.glob("lightning_logs/version_0/metrics.csv"))


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login me password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    return monkeypatch


def test_auto_mode_is_offline_without_credentials(no_credentials):
    assert resolve_mode("auto") == "offline"


def test_auto_mode_is_offline_when_the_host_does_not_answer(no_credentials):
    no_credentials.setenv("WANDB_API_KEY", "x" * 40)
    no_credentials.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    assert resolve_mode("auto") == "offline"


def test_explicit_and_environment_modes_win(no_credentials):
    assert resolve_mode("disabled") == "disabled"
    no_credentials.setenv("WANDB_MODE", "online")
    assert resolve_mode("auto") == "online"
    with pytest.raises(ConfigError, match="mode='sometimes' is invalid: choose one of auto"):
        resolve_mode("sometimes")


CRASH_WHILE_SAVING = """
import resource, signal, sys, torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
save = {"lightning": TorchCheckpointIO().save_checkpoint, "torch.save": torch.save}[sys.argv[1]]
save({"step": 1, "weights": torch.ones(1000)}, sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # the disk fills up mid-write
save({"step": 2, "weights": torch.zeros(1_000_000)}, sys.argv[2])
"""


@pytest.mark.parametrize("io, survives", [("lightning", True), ("torch.save", False)])
def test_a_crash_while_saving_keeps_the_previous_checkpoint(io, survives, tmp_path):
    """The second save fails after 200 kB of its 4 MB are written. Lightning's checkpoint
    writer, which `sparsify fit` uses, writes to a temporary file and moves it into place; a
    bare ``torch.save`` is the control that shows the test can fail: it leaves a truncated file."""
    path = tmp_path / "last.ckpt"
    result = subprocess.run(
        [sys.executable, "-c", CRASH_WHILE_SAVING, io, str(path)], capture_output=True, text=True
    )
    assert result.returncode != 0 and "Error" in result.stderr.splitlines()[-1], result.stderr
    if survives:
        assert torch.load(path)["step"] == 1
        assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left
    else:
        with pytest.raises(RuntimeError):
            torch.load(path)
