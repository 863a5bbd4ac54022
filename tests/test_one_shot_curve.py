"""The PILoT paper's one-shot evaluation: accuracy vs sparsity 1 − 0.8^k, no fine-tuning."""

import copy
import csv
import json

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from wandb_records import read_run

from helpers import UserModule, blobs, load_script, trainer
from sparsify import ConfigError
from sparsify.app.cli import main, read_config
from sparsify.app.tracking import WandbLogger
from sparsify.callbacks import OneShotPruningCurve, PruneAtEnd
from sparsify.callbacks.one_shot_curve import accuracy, curve_sparsities, write_curve
from sparsify.masks import magnitude_prune, sparsity_report
from sparsify.soft_masks import hardened_copy, sigmoid_mask

pytestmark = pytest.mark.usefixtures("one_thread")


class Classifier(UserModule):
    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test/acc", (self(x).argmax(1) == y).float().mean())


def trained(tmp_path, curve, logger=False, more=(), max_epochs=3):
    L.seed_everything(0)
    module = Classifier(lr=0.2)
    train = DataLoader(TensorDataset(*blobs()), batch_size=16, shuffle=True)
    test = DataLoader(TensorDataset(*blobs(60, seed=1)), batch_size=16)
    callbacks = [*more, *(curve if isinstance(curve, list) else [curve])]
    run = trainer(
        tmp_path, callbacks, max_epochs=max_epochs, logger=logger, enable_checkpointing=False
    )
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
    assert list(rows[0]) == ["k", "sparsity", "achieved_sparsity", "accuracy"]
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
    assert (logged["one_shot_curve/table/nrows"], logged["one_shot_curve/table/ncols"]) == (3, 4)
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
    assert curve.before_pruning


def test_curve_is_of_the_weights_before_prune_at_end_pruned_and_fine_tuned(tmp_path):
    """PruneAtEnd prunes to 97 % and fine-tunes an epoch; the protocol's curve is of the weights
    from before, the other of the fine-tuned pruned model, which is flat at its 97 % below it."""
    pruner = PruneAtEnd(sparsity=0.97, finetune_epochs=1, layer_floor=0)
    as_trained = OneShotPruningCurve(steps=16, dirpath=str(tmp_path / "trained"))
    as_is = OneShotPruningCurve(steps=16, dirpath=str(tmp_path / "final"), before_pruning=False)
    module, final_state, test = trained(tmp_path, [as_trained, as_is], more=[pruner], max_epochs=4)
    assert sparsity_report(module)["global"] == pytest.approx(0.97, abs=0.005)  # left pruned

    k = 14  # 95.6 %: sparser than the curve's previous steps, below what PruneAtEnd pruned
    unpruned = copy.deepcopy(module)
    unpruned.load_state_dict(pruner.unpruned_state_dict)
    assert not torch.equal(unpruned.net[0].weight, module.net[0].weight)  # fine-tuned since
    magnitude_prune(unpruned, 1 - 0.8**k, "global")
    row = as_trained.rows[k - 1]
    assert row["accuracy"] == accuracy(unpruned, test)
    assert row["achieved_sparsity"] == pytest.approx(1 - 0.8**k, abs=0.005)

    pruned_curve = as_is.rows[:15]  # every k with 1 − 0.8^k < 96.9 %
    assert {r["achieved_sparsity"] for r in pruned_curve} == {sparsity_report(module)["global"]}
    assert {r["accuracy"] for r in pruned_curve} == {accuracy(module, test)}
    assert row["accuracy"] < as_is.rows[k - 1]["accuracy"]  # measured: 0.62 against 1.0


def test_prune_at_end_that_has_not_pruned_is_refused_before_the_test(tmp_path):
    """As in `sparsify test` of a checkpoint: a PruneAtEnd in the run but no weights from before
    its pruning. The error names the way out; nothing is written."""
    L.seed_everything(0)
    curve = OneShotPruningCurve(dirpath=str(tmp_path / "curve"))
    run = trainer(tmp_path, [PruneAtEnd(sparsity=0.9), curve], enable_checkpointing=False)
    test = DataLoader(TensorDataset(*blobs(60, seed=1)), batch_size=16)
    with pytest.raises(
        ConfigError, match=r"before PruneAtEnd\(sparsity=0.9\) pruned.*sparsify fit"
    ):
        run.test(Classifier(), test, verbose=False)
    assert not (tmp_path / "curve").exists() and curve.rows == []

    as_is = OneShotPruningCurve(dirpath=str(tmp_path / "as_is"), before_pruning=False)
    run = trainer(tmp_path, [PruneAtEnd(sparsity=0.9), as_is], enable_checkpointing=False)
    run.test(Classifier(), test, verbose=False)
    assert len(as_is.rows) == 25


def test_sparsify_test_of_a_pruned_recipe_exits_2_with_one_line(tmp_path, capsys):
    root = tmp_path / "runs"
    argv = ["test", "--config", "data/digits", "--config", "model/cnn_digits"]
    argv += ["--config", "eval/one_shot_curve", "--config", "method/pilot", "--wandb=false"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, f"--trainer.default_root_dir={root}"])
    assert exit_info.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("sparsify:")]
    assert (
        "OneShotPruningCurve(before_pruning=True)" in line
        and "--config eval/one_shot_curve" in line
    )
    assert not list(root.glob("**/one_shot_curve.csv"))


def test_soft_masks_are_curved_hardened():
    """CS's soft mask σ(τ s) with half the scores below 0: the curve is of the binarized mask
    1[s > 0], whose zeros stay pruned at every step (achieved sparsity ~50 %, not 20 %)."""
    L.seed_everything(0)
    module = Classifier()
    sigmoid_mask(module, s_init=0.0, temperature=1.0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("scores"):
                p.normal_()
    test = DataLoader(TensorDataset(*blobs(60, seed=1)), batch_size=16)
    rows = OneShotPruningCurve(steps=2).curve(module, test)
    hard = hardened_copy(module)
    zeros = sparsity_report(hard)["global"]
    assert 0.4 < zeros < 0.6 and sparsity_report(module)["global"] == 0.0
    assert [r["achieved_sparsity"] for r in rows] == [zeros, zeros]
    magnitude_prune(hard, 0.2, "global")
    assert rows[0]["accuracy"] == accuracy(hard, test)
    assert module.net[0].weight.shape == (32, 8)  # the original keeps its soft-masked weight


def test_protocol_grid_is_every_dense_to_sparse_recipe_with_the_curve():
    protocol = load_script("one_shot_protocol")
    runs = protocol.grid(["--config", protocol.COMPARISON])
    labels = {run.method.label for run in runs}
    assert labels == {"dense", "pilot", "spred", "str", "cs", "wd_switch_off"} | {
        "l1_theta",
        "l1_mask",
        "ham",
    }
    assert sorted({run.seed for run in runs}) == [0, 1, 2] and len(runs) == 27
    assert "eval/one_shot_curve" in read_config(protocol.COMPARISON)["base"]


def test_protocol_gathers_the_curves_into_csv_plot_and_table(tmp_path):
    """Two methods, two seeds, their curves as the callback writes them: the CSV has a row per
    (method, seed, k), the table the mean ± sample std at each k and the accuracy as trained."""
    protocol = load_script("one_shot_protocol")
    out, results = tmp_path / "grid", tmp_path / "results"
    argv = ["--methods", "method/dense", "method/str", "--seeds", "0", "1", "--out", str(out)]
    accuracy_at = {("dense", 0): 0.9, ("dense", 1): 0.8, ("str", 0): 0.5, ("str", 1): 0.7}
    for run in protocol.grid(["--config", protocol.COMPARISON, *argv]):
        acc = accuracy_at[run.method.label, run.seed]
        own = 0.6 if run.method.label == "str" else 0.0  # STR's own zeros
        rows = [
            {"k": k, "sparsity": s, "achieved_sparsity": max(s, own), "accuracy": acc * (1 - s)}
            for k, s in enumerate(curve_sparsities(), start=1)
        ]
        log_dir = run.folder / "lightning_logs" / "version_0"
        write_curve(rows, log_dir)
        summary = {"test_acc": acc / 2, "sparsity": 0.9, "summary_file": "x"}
        if run.method.label == "str":
            summary["test_acc_before_pruning"] = acc
        (log_dir / "summary.json").write_text(json.dumps(summary))

    got, markdown = protocol.main(["--skip-run", "--results", str(results), *argv])

    with (results / "digits_one_shot.csv").open() as f:
        written = list(csv.DictReader(f))
    assert list(written[0]) == ["method", "seed", "k", "sparsity", "test_acc", "achieved_sparsity"]
    assert len(written) == 4 * 25 == len(got)
    assert (results / "digits_one_shot.png").read_bytes()[:4] == b"\x89PNG"
    lines = markdown.splitlines()
    assert lines[0].startswith("| method | seeds | as trained | 89.3% (k = 10) |")
    at_10 = 0.8**10 * 100
    dense = f"| dense | 2 | 42.5 ± 3.5 | {0.85 * at_10:.1f} ± {0.1 / 2**0.5 * at_10:.1f} |"
    assert lines[2].startswith(dense)  # dense: as trained is its final test_acc
    assert lines[3].startswith("| str | 2 | 60.0 ± 14.1 |") and lines[3].endswith("| 60.0% |")
