"""The files sparsify reads back (``sparsify export``, ``--ckpt_path``, ``init_from``,
``SignTransfer``): read with ``torch.load(weights_only=True)``, so a file that would run code
when unpickled is refused, and a corrupt or foreign file is one line and exit code 2."""

import argparse
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import jsonargparse
import pytest
import torch
from omegaconf import OmegaConf

from helpers import UserModule, loaders, trainer
from sparsify.app.cli import main
from sparsify.callbacks import SignTransfer
from sparsify.checkpoint import read_checkpoint, read_state_dict
from sparsify.errors import ConfigError
from sparsify.lightning.module import LanguageModel

SHORT = [
    "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1", "--wandb=false", "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]  # fmt: skip


def sparsify_cmd(*args, cwd):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "sparsify", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def final_checkpoint(tmp_path_factory):
    """A real `sparsify fit` run of the default method, two epochs."""
    root = tmp_path_factory.mktemp("fit")
    main(["fit", "--trainer.max_epochs=2", f"--trainer.default_root_dir={root}", *SHORT])
    (path,) = root.glob("lightning_logs/version_*/checkpoints/final.ckpt")
    return path


class WritesAFile:
    """Unpickled, it opens ``path`` for writing: the file appears if the pickle ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def malicious(tmp_path):
    """A checkpoint-shaped file whose hyper-parameters run ``open(marker, "w")`` when loaded
    with full unpickling; returns (file, marker)."""
    marker = tmp_path / "the_pickle_ran"
    path = tmp_path / "received.ckpt"
    state = {"model.0.weight": torch.ones(2, 2)}
    torch.save({"state_dict": state, "hyper_parameters": {"x": WritesAFile(marker)}}, path)
    return path, marker


def foreign_files(folder: Path, real: Path) -> dict[str, Path]:
    """Files that are no checkpoint of torch.save: text, random bytes (whose opcodes the
    weights-only unpickler does not know), a truncated checkpoint, an empty file, a plain pickle."""
    names = ("bytes.ckpt", "random.ckpt", "cut.ckpt", "empty.ckpt", "dict.pkl")
    files = {name: folder / name for name in names}
    files["bytes.ckpt"].write_bytes(b"this is not a checkpoint\n")
    files["random.ckpt"].write_bytes(random.Random(0).randbytes(1000))
    data = real.read_bytes()
    files["cut.ckpt"].write_bytes(data[: len(data) // 2])
    files["empty.ckpt"].write_bytes(b"")
    files["dict.pkl"].write_bytes(pickle.dumps({"state_dict": {}}))
    return files


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0].startswith("sparsify: error: ")
    return lines[0]


def test_export_exits_0_and_prints_the_written_paths(final_checkpoint, tmp_path):
    out = tmp_path / "exported"
    result = sparsify_cmd("export", final_checkpoint, "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    paths = [out / "model.pt", out / "model.torchscript.pt"]
    assert result.stdout.splitlines() == [str(p) for p in paths]
    assert all(p.is_file() for p in paths)
    assert "PosixPath" not in result.stdout + result.stderr  # no dict printed at exit


def test_our_checkpoints_and_lightning_hyperparameters_load_without_full_unpickling(
    final_checkpoint, tmp_path
):
    assert torch.serialization.get_unsafe_globals_in_checkpoint(final_checkpoint) == []
    assert read_checkpoint(final_checkpoint)["hyper_parameters"]["backbone"] == "cnn_digits"

    class WithConfigs(UserModule):
        def __init__(self, data_dir: Path, cli: jsonargparse.Namespace, args, cfg):
            super().__init__()
            self.save_hyperparameters()

    hparams = {
        "data_dir": Path("/data/digits"),
        "cli": jsonargparse.Namespace(lr=0.1, sched=jsonargparse.Namespace(name="cosine")),
        "args": argparse.Namespace(seed=3),
        "cfg": OmegaConf.create({"width": 32, "layers": [1, 2], "opt": {"name": "sgd"}}),
    }
    run = trainer(tmp_path, [], max_epochs=1, enable_checkpointing=False)
    run.fit(WithConfigs(**hparams), *loaders())
    path = tmp_path / "lightning.ckpt"
    run.save_checkpoint(path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path)  # needs the allowlist
    saved = read_checkpoint(path)["hyper_parameters"]
    assert saved["data_dir"] == hparams["data_dir"] and saved["args"] == hparams["args"]
    assert saved["cli"] == hparams["cli"]
    assert OmegaConf.to_container(saved["cfg"]) == OmegaConf.to_container(hparams["cfg"])


def test_a_malicious_checkpoint_is_refused_everywhere_and_runs_nothing(malicious, tmp_path):
    path, marker = malicious
    out = tmp_path / "exported"
    result = sparsify_cmd("export", path, "--out", out, cwd=tmp_path)
    assert result.returncode == 2
    line = one_line_error(result.stderr)
    assert f"checkpoint='{path}' is refused" in line and "--trust-checkpoint" in line
    with pytest.raises(ConfigError, match=r"init_from=.* is refused.*weights_only=True"):
        LanguageModel(init_from=str(path))
    with pytest.raises(ConfigError, match=r"checkpoint=.* is refused.*trusted=True"):
        run = trainer(tmp_path, [SignTransfer(str(path), sparsity=0.5)], max_epochs=1)
        run.fit(UserModule(), *loaders())
    assert not marker.exists() and not out.exists()
    read_checkpoint(path, trusted=True)  # the opt-in unpickles in full: the file does run code
    assert marker.exists()


def test_a_corrupt_or_foreign_checkpoint_is_one_line_and_exit_2(
    final_checkpoint, malicious, tmp_path, capsys
):
    files = foreign_files(tmp_path, final_checkpoint)
    for name, path in files.items():
        with pytest.raises(SystemExit) as exit_info:
            main(["export", str(path), "--out", str(tmp_path / "out")])
        assert exit_info.value.code == 2, name
        line = one_line_error(capsys.readouterr().err)
        assert f"checkpoint='{path}' is" in line
        refused = name == "dict.pkl"  # a plain pickle: readable only by full unpickling
        assert ("is refused" if refused else "is invalid: not a checkpoint") in line, line
        if not refused:
            with pytest.raises(ConfigError, match="not a checkpoint that torch.load can read"):
                read_checkpoint(path, trusted=True)
    assert not (tmp_path / "out").exists()
    # `sparsify test --ckpt_path`, the real command: before LightningCLI reads the file
    malicious_path, marker = malicious
    for path, says in ((files["cut.ckpt"], "is invalid"), (malicious_path, "is refused")):
        result = sparsify_cmd("test", "--ckpt_path", path, *SHORT, cwd=tmp_path)
        assert result.returncode == 2
        assert f"ckpt_path='{path}' {says}" in one_line_error(result.stderr)
    assert not marker.exists()


def test_sparsify_test_reads_our_checkpoint(final_checkpoint, tmp_path):
    result = sparsify_cmd("test", "--ckpt_path", final_checkpoint, *SHORT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test/acc" in result.stdout


def test_a_plain_state_dict_needs_nothing_beyond_weights(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(UserModule().net.state_dict(), path)
    assert list(read_state_dict(path)) == ["0.weight", "0.bias", "2.weight", "2.bias"]
