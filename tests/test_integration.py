"""sparsify's callbacks as guests in a Lightning project written the common way
(tests/lit_project: a LitModule holding its network through save_hyperparameters, Adam with
ReduceLROnPlateau, ModelCheckpoint on val/acc, a separate eval script), and in Lightning's
own demo modules."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos import BoringModel, LightningTransformer
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from helpers import UserModule, loaders, trainer
from sparsify.callbacks import MagnitudePruning, PILoT, PruneAtEnd, Reparametrize, SparsityMonitor
from sparsify.errors import ConfigError
from sparsify.export import export
from sparsify.portable import restore_state_dict

PROJECT = Path(__file__).parent / "lit_project"
sys.path.insert(0, str(PROJECT))

from train import train  # noqa: E402  (the project's own train script)


def run_eval(checkpoint: str, out: Path) -> dict:
    """The project's eval script in a process of its own, which never imports sparsify."""
    subprocess.run(
        [sys.executable, "eval.py", checkpoint, str(out)],
        cwd=PROJECT,
        check=True,
        capture_output=True,
    )
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("project")
    result = train(str(PROJECT / "configs/callbacks/sparsify.yaml"), str(out), epochs=4)
    return out, result


def test_the_project_gets_a_sparse_best_checkpoint_that_its_eval_script_loads(sparse_run):
    out, result = sparse_run
    best = Path(result["best_model_path"])
    assert best.name == "pruned.ckpt"  # the dense epochs' checkpoints no longer compete
    assert len(list(best.parent.glob("epoch=*.ckpt"))) >= 1  # they stay on disk, unranked
    evaluated = run_eval(str(best), out / "eval.json")
    assert not evaluated["sparsify_imported"]
    assert evaluated["sparsity"] == pytest.approx(0.9, abs=1e-3)  # exact zeros in θ
    assert evaluated["test/acc"] == pytest.approx(result["test/acc"], abs=1e-6)
    assert evaluated["load_from_checkpoint_equal"]  # the pickled network is the plain one


def test_sparsify_export_takes_the_project_checkpoint_with_a_factory(sparse_run, tmp_path):
    out, result = sparse_run
    sys.path.insert(0, str(PROJECT))
    best = result["best_model_path"]
    # The project keeps its network in the hyper-parameters: only full unpickling reads it.
    with pytest.raises(ConfigError, match=r"is refused: .*--trust-checkpoint"):
        export(best, tmp_path, "none", factory="project:build", submodule="net")
    paths = export(best, tmp_path, "none", factory="project:build", submodule="net", trusted=True)
    saved = torch.load(paths["state_dict"])
    from project import MLP

    plain = MLP()
    plain.load_state_dict(saved["state_dict"])  # strict: plain keys only
    weights = [p for n, p in plain.named_parameters() if n.endswith("weight")]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros / sum(w.numel() for w in weights) == pytest.approx(0.9, abs=1e-3)
    assert set(saved["masks"]) == {"model.1", "model.3", "model.5"}


def test_resuming_with_the_callbacks_restores_factors_and_masks_bit_exactly(tmp_path):
    """A portable checkpoint (plain θ) brings back m, w and the masks when the callbacks run."""
    callbacks = lambda: [Reparametrize(), PILoT(), PruneAtEnd(0.5, finetune_epochs=1)]  # noqa: E731
    first = trainer(tmp_path, callbacks(), max_epochs=2)
    first.fit(UserModule(lr=0.05), *loaders())
    first.save_checkpoint(tmp_path / "pruned.ckpt")
    saved = torch.load(tmp_path / "pruned.ckpt", weights_only=False)
    assert not any("parametrizations" in k for k in saved["state_dict"])
    module = UserModule(lr=0.05)
    second = trainer(tmp_path, callbacks(), max_epochs=2)
    second.validate(module, loaders()[1], ckpt_path=tmp_path / "pruned.ckpt", verbose=False)
    original = restore_state_dict(saved["state_dict"])
    assert module.state_dict().keys() == original.keys()
    for key, value in module.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert any(key.endswith("original0") for key in original)


def test_two_instances_of_a_stateful_callback_coexist_and_sparsity_is_monitorable(tmp_path):
    prune_first = MagnitudePruning(0.5, start=0.0, end=0.5, include=["net.0"])
    prune_last = MagnitudePruning(0.8, start=0.0, end=0.5, include=["net.2"])
    best = ModelCheckpoint(dirpath=tmp_path, monitor="sparsity/global", mode="max")
    run = trainer(tmp_path, [prune_first, prune_last, SparsityMonitor(), best], max_epochs=2)
    run.fit(UserModule(), *loaders())
    saved = torch.load(best.best_model_path, weights_only=False)
    keys = [k for k in saved["callbacks"] if k.startswith("MagnitudePruning")]
    assert len(keys) == 2
    expected = (0.5 * 8 * 32 + 0.8 * 32 * 3) / (8 * 32 + 32 * 3)
    assert float(best.best_model_score) == pytest.approx(expected, abs=1e-3)


def test_a_schedule_of_a_zero_base_weight_decay_warns(tmp_path):
    from sparsify.callbacks import WeightDecaySwitchOff

    with pytest.warns(UserWarning, match="base weight decay is 0 in every scheduled param"):
        trainer(tmp_path, [WeightDecaySwitchOff()], max_epochs=1).fit(
            UserModule(weight_decay=0.0), *loaders()
        )


def test_lightning_boring_model_with_the_callbacks_reloads_plain(tmp_path):
    """BoringModel logs no accuracy: PILoT follows its training loss."""
    pilot = PILoT()
    callbacks = [Reparametrize(), pilot, PruneAtEnd(0.5)]
    run = trainer(tmp_path, callbacks, max_epochs=2, limit_train_batches=8, limit_val_batches=2)
    run.fit(BoringModel())
    assert pilot.follows_loss
    run.save_checkpoint(tmp_path / "boring.ckpt")
    plain = BoringModel()
    plain.load_state_dict(torch.load(tmp_path / "boring.ckpt")["state_dict"])
    assert float((plain.layer.weight == 0).float().mean()) == pytest.approx(0.5)


class OfflineTransformer(LightningTransformer):
    """Lightning's demo transformer, without its WikiText2 download (no network in tests)."""

    def prepare_data(self):
        pass


def test_lightning_demo_transformer_trains_sparse_with_the_callbacks(tmp_path):
    tokens = torch.randint(0, 32, (8, 7))
    data = DataLoader(TensorDataset(tokens[:, :-1], tokens[:, 1:]), batch_size=4)
    pilot = PILoT()
    run = trainer(tmp_path, [Reparametrize(), pilot, PruneAtEnd(0.8)], max_epochs=1)
    run.fit(OfflineTransformer(vocab_size=32), data)
    run.save_checkpoint(tmp_path / "lm.ckpt")
    plain = LightningTransformer(vocab_size=32)
    plain.load_state_dict(torch.load(tmp_path / "lm.ckpt")["state_dict"])
    weights = [m.weight for m in plain.modules() if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros / sum(w.numel() for w in weights) == pytest.approx(0.8, abs=1e-3)


def test_rigl_derives_its_update_interval_from_the_run_length():
    from sparsify.callbacks.rigl import update_interval

    assert update_interval(200, 0.75) == 7  # 21 updates in a 200-step run, not 1
    assert update_interval(100_000, 0.75) == 100  # the reference's ΔT for long runs
    assert update_interval(10, 0.5) == 1


def test_sparsity_monitor_writes_step_values_to_the_logger(tmp_path):
    """Step values go to the loggers every ``every_n_steps`` steps (not through Lightning's
    per-step metric collection); the epoch value stays monitorable."""
    logger = CSVLogger(tmp_path)
    prune = MagnitudePruning(0.5, start=0.0, end=0.5)
    run = trainer(tmp_path, [prune, SparsityMonitor(every_n_steps=2)], max_epochs=2, logger=logger)
    run.fit(UserModule(), *loaders())
    rows = list(csv.DictReader(open(tmp_path / "lightning_logs/version_0/metrics.csv")))
    steps = sorted(
        {int(r["step"]) for r in rows if r.get("sparsity/global") and not r.get("epoch")}
    )
    assert steps == list(range(2, run.global_step + 1, 2))  # counted after each step
    assert float(run.callback_metrics["sparsity/global"]) == pytest.approx(0.5, abs=1e-3)
