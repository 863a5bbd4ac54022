"""The paper-scale kit (configs/paper, docs/paper_kit.md): every comparison names the published
numbers of its table beside methods it really runs, and every run of it, as ``sparsify compare``
would launch it, trains a few steps on tiny files in the real CIFAR / ImageNet formats, on CPU,
and ends at its target sparsity."""

import json

import pytest
import test_datamodules
from test_datamodules import write_image_folder

from sparsify.app.cli import main, shipped_configs
from sparsify.app.compare import job_for, load_settings, make_grid, parse_args
from sparsify.app.compare_report import COLUMNS, write_markdown
from sparsify.errors import ConfigError

tiny_cifar = test_datamodules.tiny_cifar  # the fixture, shared with this module
KITS = [name for name in shipped_configs() if name.startswith("paper/")]
SHORT = [  # six epochs of one batch: long enough for every schedule to reach its target
    "--trainer.max_epochs=6",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.enable_model_summary=false",
    "--data.init_args.num_workers=0",
    # The recipes, not the networks, are under test: ResNet-50 and -18 with their checkpoints
    # take minutes on two CPU cores; test_datamodules trains them on the same files.
    "--model.init_args.backbone=resnet20",
]


def grid(kit, *flags):
    args, fit_args = parse_args(["--config", kit, "--seeds", "0", *flags])
    settings = load_settings(args, fit_args)
    return settings, make_grid(settings)


def test_the_kit_covers_every_published_table():
    assert sorted(KITS) == [
        "paper/ham_imagenet",
        "paper/pilot_imagenet",
        "paper/signin_cifar10",
        "paper/signin_cifar100",
        "paper/signin_imagenet",
    ]
    for kit in KITS:
        settings, runs = grid(kit)
        labels = {run.method.label for run in runs}
        assert settings["published"] and set(settings["published"]) <= labels
        for label, numbers in settings["published"].items():
            if isinstance(numbers, dict):  # a number for each sparsity of the grid
                assert set(numbers) == set(settings["sparsities"]), (kit, label)


def test_published_numbers_stand_beside_the_measured_ones(tmp_path):
    rows = [
        {**dict.fromkeys(COLUMNS), "method": m, "family": "PaI", "sparsity_target": 0.9}
        | {"seed": 0, "test_acc": acc}
        for m, acc in (("pai_random_erk", 0.8), ("pai_random_erk_signin", 0.85))
    ]
    settings, _ = grid("paper/signin_cifar10")
    table = write_markdown(rows, tmp_path / "results.md", settings["published"]).read_text()
    assert "| pai_random_erk | PaI | 90 % | 1 | 80.00 | 86.25 |" in table
    assert "| pai_random_erk_signin | PaI | 90 % | 1 | 85.00 | 87.83 |" in table


def test_published_numbers_for_a_method_the_comparison_does_not_run_fail(tmp_path):
    kit = tmp_path / "kit.yaml"
    kit.write_text(
        "methods: [method/gmp]\nsparsities: [0.9]\nseeds: [0]\npublished: {gmpp: {0.9: 75.0}}\n"
    )
    with pytest.raises(ConfigError, match="'gmpp', which is not one of the methods \\(gmp\\)"):
        load_settings(*parse_args(["--config", str(kit)]))


def test_composed_methods_add_their_callbacks_in_order():
    _, runs = grid("paper/ham_imagenet", "--methods", "method/ham_imagenet+method/acdc")
    callbacks = runs[0].method.recipe["trainer"]["callbacks"]
    assert [c["class_path"].rsplit(".", 1)[1] for c in callbacks] == ["HAMStep", "ACDC"]
    assert (
        runs[0].method.label == "ham_imagenet+acdc" and runs[0].method.family == "dense-to-sparse"
    )


@pytest.fixture
def data(tmp_path, tiny_cifar):
    """Tiny CIFAR-10/100 (torchvision's pickles) and ImageNet (a folder of JPEGs)."""
    for name in ("cifar10", "cifar100"):
        tiny_cifar(name, per_file=8)
    write_image_folder(tmp_path / "imagenet", ["n01", "n02"], train=2, val=1)
    return {
        "cifar": [
            f"--data.init_args.data_dir={tmp_path / 'data'}",
            "--data.init_args.batch_size=4",
        ],
        "imagenet": [
            f"--data.init_args.data_dir={tmp_path / 'imagenet'}",
            "--data.init_args.batch_size=2",
            "--data.init_args.image_size=32",
            "--model.init_args.num_classes=2",
        ],
    }


# One run of each comparison, the one with the most parts (not all 77).
RUNS = {
    "paper/ham_imagenet": "method/ham_imagenet+method/str_imagenet",
    "paper/pilot_imagenet": "method/pilot_imagenet",
    "paper/signin_cifar10": "method/pai_random_erk_signin",
    "paper/signin_cifar100": "method/pai_random_erk_signin",
    "paper/signin_imagenet": "method/rigl_signin_imagenet",
}


def test_every_comparison_of_the_kit_has_a_run_tested_below():
    assert sorted(RUNS) == KITS


@pytest.mark.parametrize("kit", KITS)
def test_a_run_of_each_comparison_trains_on_cpu_to_its_target(kit, data, tmp_path, monkeypatch):
    dataset = "imagenet" if "imagenet" in kit else "cifar"
    flags = ["--methods", RUNS[kit], "--sparsities", "0.9", "--out", str(tmp_path / "out")]
    settings, [run] = grid(kit, *flags, *SHORT, *data[dataset])
    job = job_for(run, settings, wandb=False, progress_bar=False)
    job.folder.mkdir(parents=True)
    for name, text in job.files.items():
        (job.folder / name).write_text(text)
    assert job.command[1:4] == ["-m", "sparsify", "fit"]
    main(job.command[3:])
    summary = json.loads(next(job.folder.rglob("summary.json")).read_text())
    assert 0 <= summary["test_acc"] <= 1
    assert summary["sparsity"] == pytest.approx(0.9, abs=0.002)
