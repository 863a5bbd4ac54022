"""The PILoT paper's one-shot evaluation: accuracy vs sparsity 1 − 0.8^k, no fine-tuning."""

import copy
import csv

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from wandb_records import read_run

from helpers import UserModule, blobs, trainer
from sparsify import ConfigError
from sparsify.callbacks import OneShotPruningCurve
from sparsify.callbacks.one_shot_curve import accuracy, curve_sparsities
from sparsify.cli import read_config
from sparsify.masks import magnitude_prune, sparsity_report
from sparsify.tracking import WandbLogger

pytestmark = pytest.mark.usefixtures("one_thread")


class Classifier(UserModule):
    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test/acc", (self(x).argmax(1) == y).float().mean())


def trained(tmp_path, curve, logger=False):
    L.seed_everything(0)
    module = Classifier(lr=0.2)
    train = DataLoader(TensorDataset(*blobs()), batch_size=16, shuffle=True)
    test = DataLoader(TensorDataset(*blobs(60, seed=1)), batch_size=16)
    run = trainer(tmp_path, [curve], max_epochs=3, logger=logger, enable_checkpointing=False)
    run.fit(module, train)
    before = copy.deepcopy(module.state_dict())
    run.test(module, test, verbose=False)
    return module, before, test


def test_sparsities_are_one_minus_0_8_to_the_k():
    assert curve_sparsities() == pytest.approx([1 - 0.8**k for k in range(1, 26)], abs=0)
    assert curve_sparsities()[0] == pytest.approx(0.2) and len(curve_sparsities()) == 25


def test_curve_leaves_the_model_and_matches_direct_pruning(tmp_path):
    curve = OneShotPruningCurve(steps=20, dirpath=str(tmp_path / "curve"))
    module, before, test = trained(tmp_path, curve)
    after = module.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert sparsity_report(module)["global"] == 0.0

    assert [row["sparsity"] for row in curve.rows] == curve_sparsities(20)
    direct = copy.deepcopy(module)
    magnitude_prune(direct, 0.2, "global")
    assert curve.rows[0]["accuracy"] == accuracy(direct, test)
    dense = accuracy(module, test)
    assert dense > 0.9 and curve.rows[-1]["accuracy"] < dense  # 98.8 % sparsity: 4 weights left

    with (tmp_path / "curve" / "one_shot_curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["k", "sparsity", "accuracy"]
    assert [int(r["k"]) for r in rows] == list(range(1, 21))
    assert float(rows[0]["accuracy"]) == curve.rows[0]["accuracy"]
    assert (tmp_path / "curve" / "one_shot_curve.png").stat().st_size > 0


def test_curve_is_logged_to_an_offline_wandb_run(tmp_path):
    logger = WandbLogger(project="sparsify-test", mode="offline", save_dir=str(tmp_path))
    curve = OneShotPruningCurve(steps=3, dirpath=str(tmp_path / "curve"))
    trained(tmp_path, curve, logger=logger)
    logger.experiment.finish()
    (run_dir,) = tmp_path.glob("wandb/offline-run-*")
    history = read_run(run_dir)["history"]
    logged = {key: value for row in history for key, value in row.items()}
    assert logged["one_shot_curve/table/_type"] == "table-file"
    assert (logged["one_shot_curve/table/nrows"], logged["one_shot_curve/table/ncols"]) == (3, 3)
    assert logged["one_shot_curve/plot/_type"] == "images/separated"
    assert logged["one_shot_curve/plot/count"] == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [({"steps": 0}, "steps=0"), ({"rate": 1.0}, "rate=1.0"), ({"stage": "val"}, "stage='val'")],
)
def test_bad_arguments_fail_with_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        OneShotPruningCurve(**kwargs)


def test_shipped_eval_config_builds_the_papers_protocol():
    config = read_config("eval/one_shot_curve")
    (entry,) = config["trainer"]["callbacks"]
    assert entry["class_path"] == "sparsify.callbacks.OneShotPruningCurve"
    curve = OneShotPruningCurve(**entry["init_args"])
    assert (curve.steps, curve.rate, curve.stage, curve.scope) == (25, 0.8, "test", "global")
