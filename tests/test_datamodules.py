"""The datamodules on their real on-disk formats: CIFAR python pickles, an ImageFolder of JPEGs,
text files; the synthetic problems; each through a short `sparsify fit`, and missing data as one
line with exit code 2."""

import hashlib
import json
import math
import pickle
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100

from helpers import fit_error
from sparsify.app.cli import main, prepare_argv, shipped_configs
from sparsify.datamodules import (
    CIFARDataModule,
    DigitsDataModule,
    ImageNetDataModule,
    MatrixSensingDataModule,
    SparseCodingDataModule,
    SparseRegressionDataModule,
    TextDataModule,
)
from sparsify.datamodules.cifar import DATASETS
from sparsify.errors import ConfigError

QUIET = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.logger=false",
]
CIFAR = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def write_cifar(root, name, per_file=12, seed=0):
    """A tiny CIFAR in torchvision's on-disk format (the pickled dicts of the real archives)
    and its md5 sums, as {file name: md5}."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, label_key, classes = root / "cifar-10-batches-py", "labels", 10
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta = ("batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072})
    else:
        folder, label_key, classes = root / "cifar-100-python", "fine_labels", 100
        files = ["train", "test"]
        meta = ("meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    folder.mkdir(parents=True)
    written = {}
    for file in files:
        labels = rng.integers(0, classes, per_file).tolist()
        entry = {
            "batch_label": file,
            "data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
            label_key: labels,
            "filenames": [f"{i}.png" for i in range(per_file)],
        }
        if name == "cifar100":
            entry["coarse_labels"] = [label // 5 for label in labels]
        (folder / file).write_bytes(pickle.dumps(entry, protocol=2))
        written[file] = entry
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1], protocol=2))
    md5 = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in folder.iterdir()}
    return written, md5


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch):
    """Writes a tiny CIFAR-10 or -100 under tmp_path/data. torchvision checks the files against
    the md5 sums of the real archives, which generated files cannot match: the expected sums
    become those of the generated files (the check itself still runs), nothing else changes."""

    def make(name, per_file=12):
        written, md5 = write_cifar(tmp_path / "data", name, per_file)
        cls = CIFAR[name]
        monkeypatch.setattr(cls, "train_list", [[f, md5[f]] for f, _ in cls.train_list])
        monkeypatch.setattr(cls, "test_list", [[f, md5[f]] for f, _ in cls.test_list])
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})
        return tmp_path / "data", written

    return make


def write_image_folder(root, classes, train=3, val=2, size=(40, 30)):
    """``root/{train,val}/<class>/*.JPEG``, real JPEG files of random pixels."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for name in classes if count else ():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}_{i}.JPEG", quality=90)
    return root


def run_fit(*args, root):
    main(["fit", *args, f"--trainer.default_root_dir={root}", *QUIET])
    return json.loads(next(root.rglob("summary.json")).read_text())


# CIFAR ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_the_real_pickle_format(name, tiny_cifar):
    data_dir, written = tiny_cifar(name)
    dm = CIFARDataModule(name, str(data_dir), batch_size=8, val_size=4, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    train_files = 5 if name == "cifar10" else 1
    assert dm.num_classes == {"cifar10": 10, "cifar100": 100}[name]
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (12 * train_files - 4, 4, 12)
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)
    # A test image normalized back is the written one: channel-planar rows of 3 × 32 × 32 bytes.
    test = written["test_batch" if name == "cifar10" else "test"]
    image, label = dm.test_set[3]
    _, _, mean, std = DATASETS[name]
    mean, std = torch.tensor(mean), torch.tensor(std)
    pixels = image * std[:, None, None] + mean[:, None, None]
    expected = torch.tensor(test["data"][3].reshape(3, 32, 32), dtype=torch.float32) / 255
    assert torch.allclose(pixels, expected, atol=1e-5)
    assert label == test["labels" if name == "cifar10" else "fine_labels"][3]
    # Training images are augmented (random crop of the padded image, flip); evaluation ones not.
    assert dm.val_set[0][0].equal(dm.val_set[0][0])
    torch.manual_seed(0)
    assert any(not dm.train_set[0][0].equal(dm.train_set[0][0]) for _ in range(5))
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long


def test_cifar_split_is_decided_by_its_seed(tiny_cifar):
    data_dir, _ = tiny_cifar("cifar10")

    def held_out(seed):
        dm = CIFARDataModule(data_dir=str(data_dir), val_size=20, seed=seed, num_workers=0)
        dm.setup()
        return sorted(dm.val_set.indices)

    assert held_out(0) == held_out(0) != held_out(1)
    dm = CIFARDataModule(data_dir=str(data_dir), val_size=0, num_workers=0)
    dm.setup()
    assert dm.val_set is dm.test_set and len(dm.train_set) == 60


# dataset: (experiment, its flags in a short run)
def test_cifar_device_loader_matches_the_per_image_loader(tiny_cifar):
    """``loader="device"``: the same normalized images as torchvision's per-image pipeline,
    the same order without shuffling; training batches cropped and flipped, 3 × 32 × 32."""
    data_dir, _ = tiny_cifar("cifar10")
    dms = {
        loader: CIFARDataModule(
            data_dir=str(data_dir), batch_size=8, val_size=12, num_workers=0, loader=loader
        )
        for loader in ("device", "torch")
    }
    for dm in dms.values():
        dm.setup()
    for split in ("val_dataloader", "test_dataloader"):
        device, per_image = (list(getattr(dm, split)()) for dm in dms.values())
        assert len(device) == len(per_image) > 1
        for (x, y), (tx, ty) in zip(device, per_image):
            torch.testing.assert_close(x, tx)
            assert torch.equal(y, ty)
    batches = dms["device"].train_dataloader()
    assert (batches.crop_padding, batches.flip) == (4, True)
    x, y = next(iter(batches))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long


CIFAR_RUNS = {
    "cifar10": ("cifar10_resnet20", ["--data.init_args.batch_size=16", "--trainer.max_steps=2"]),
    "cifar100": (
        "cifar100_resnet18",
        [
            "--data.init_args.batch_size=4",
            "--trainer.max_steps=1",
            "--trainer.limit_test_batches=1",
        ],
    ),
}


@pytest.mark.parametrize("dataset", CIFAR_RUNS)
def test_cifar_fit_end_to_end(tiny_cifar, tmp_path, dataset):
    experiment, flags = CIFAR_RUNS[dataset]
    data_dir, _ = tiny_cifar(dataset, per_file=8)
    summary = run_fit(
        f"--config=experiment/{experiment}",
        "--config=method/dense",
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.num_workers=0",
        "--trainer.limit_val_batches=1",
        *flags,
        root=tmp_path / "runs",
    )
    assert 0 <= summary["test_acc"] <= 1


# ImageNet -------------------------------------------------------------------------------------


def test_imagenet_folder_with_class_and_sample_subsets(tmp_path):
    root = write_image_folder(tmp_path / "imagenet", ["n01", "n02", "n03", "n04"], train=4)
    full = ImageNetDataModule(str(root), batch_size=4, image_size=32, num_workers=0)
    full.setup()
    assert full.num_classes == 4 and (len(full.train_set), len(full.val_set)) == (16, 8)
    x, y = next(iter(full.val_dataloader()))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 0, 1, 1]

    def subset(seed):
        dm = ImageNetDataModule(
            str(root), image_size=32, classes=2, samples_per_class=3, seed=seed, num_workers=0
        )
        dm.setup()
        paths = [dm.train_set.base.samples[i][0] for i in dm.train_set.indices]
        return dm, paths

    dm, paths = subset(0)
    assert dm.num_classes == 2 and len(dm.classes) == 2 and len(paths) == 6
    assert sorted({label for _, label in dm.val_set}) == [0, 1]
    assert subset(0)[1] == paths
    assert any(subset(seed)[1] != paths for seed in (1, 2, 3))
    named = ImageNetDataModule(str(root), image_size=32, classes=["n04", "n02"], num_workers=0)
    named.setup()
    assert named.classes == ["n02", "n04"]
    image, label = named.train_set[0]
    assert image.shape == (3, 32, 32) and label == 0
    (root / "val" / "n05").mkdir()
    (root / "train" / "n05").mkdir()
    with pytest.raises(ConfigError, match="found empty class folders: train/n05, val/n05"):
        ImageNetDataModule(str(root))


def test_imagenet_fit_end_to_end(tmp_path):
    root = write_image_folder(tmp_path / "imagenet", ["n01", "n02"], train=2, val=1)
    summary = run_fit(
        "--config=experiment/imagenet_resnet50",
        "--config=method/dense",
        f"--data.init_args.data_dir={root}",
        "--data.init_args.image_size=64",
        "--data.init_args.batch_size=2",
        "--data.init_args.num_workers=0",
        "--model.init_args.num_classes=2",
        "--trainer.max_steps=1",
        "--trainer.limit_val_batches=1",
        root=tmp_path / "runs",
    )
    assert 0 <= summary["test_acc"] <= 1


# Missing data: one line, exit 2, nothing written -----------------------------------------------


def flat_val(tmp_path):
    root = write_image_folder(tmp_path / "imagenet", ["n01"], val=0)
    (root / "val").mkdir()
    for i in range(3):
        (root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"")
    return [f"--data.init_args.data_dir={root}"]


def cifar_without_a_batch(tmp_path):
    write_cifar(tmp_path / "data", "cifar10", per_file=2)
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_3").unlink()
    return [f"--data.init_args.data_dir={tmp_path / 'data'}"]


MISSING = {
    "cifar10 folder absent": (
        "cifar10_resnet20",
        lambda t: [f"--data.init_args.data_dir={t / 'nowhere'}"],
        r"data_dir='.*nowhere' is invalid: expected cifar10 in '.*nowhere/cifar-10-batches-py', "
        r"found '.*nowhere' does not exist; add --data.init_args.download=true to download it",
    ),
    "cifar100 not in data_dir": (
        "cifar100_resnet18",
        lambda t: [f"--data.init_args.data_dir={t}"],
        r"expected cifar100 in '.*/cifar-100-python', found no cifar-100-python/ in it; "
        r"add --data.init_args.download=true",
    ),
    "cifar10 batch missing": (
        "cifar10_resnet20",
        cifar_without_a_batch,
        r"found cifar-10-batches-py/ lacks data_batch_3; add --data.init_args.download=true",
    ),
    "imagenet absent": (
        "imagenet_resnet50",
        lambda t: [f"--data.init_args.data_dir={t / 'nowhere'}"],
        r"expected the layout <data_dir>/train/<class>/\*.JPEG and "
        r"<data_dir>/val/<class>/\*.JPEG, found '.*nowhere' does not exist",
    ),
    "imagenet val not sorted into classes": (
        "imagenet_resnet50",
        flat_val,
        r"found val/ with 3 files and no class folders \(sort the validation images",
    ),
    "text file absent": (
        "gpt_copy",
        lambda t: ["--data.init_args.task=file", f"--data.init_args.path={t / 'input.txt'}"],
        r"path='.*input.txt' is invalid: expected a text file, found nothing there",
    ),
}


@pytest.mark.parametrize("case", sorted(MISSING))
def test_missing_data_is_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    experiment, make_args, message = MISSING[case]
    # The default logger on purpose: it must not have written anything either.
    argv = [f"--config=experiment/{experiment}", *make_args(tmp_path)]
    line = fit_error(argv, tmp_path / "runs", capsys)
    assert re.search(message, line), line


def test_corrupted_cifar_file_fails_its_md5_check(tiny_cifar):
    data_dir, _ = tiny_cifar("cifar10")
    (data_dir / "cifar-10-batches-py" / "test_batch").write_bytes(b"truncated")
    dm = CIFARDataModule(data_dir=str(data_dir), num_workers=0)
    with pytest.raises(ConfigError, match=r"test_batch' fails its md5 check .* delete"):
        dm.prepare_data()


# Text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["copy", "permute"])
def test_planted_rule_holds_in_every_sequence(task):
    dm = TextDataModule(task, block_size=12, vocab_size=7, lag=4, train_sequences=50)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == y.dtype == torch.long and x.shape == y.shape == (50, 12)
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    sequence = torch.cat([x, y[:, -1:]], dim=1)
    assert torch.equal(sequence[:, 4:], dm.permutation[sequence[:, :-4]])
    identity = torch.equal(dm.permutation, torch.arange(7))
    assert identity == (task == "copy")
    assert dm.vocab_size == 7 and dm.block_size == 12 and int(x.max()) < 7
    again = TextDataModule(task, block_size=12, vocab_size=7, lag=4, train_sequences=50)
    again.setup()
    assert torch.equal(again.train_set.sequences, dm.train_set.sequences)


@pytest.mark.parametrize("tokens", ["char", "byte"])
def test_text_file_windows(tokens, tmp_path):
    text = "".join(f"line {i}: señor\n" for i in range(40))
    path = tmp_path / "input.txt"
    path.write_text(text, encoding="utf-8")
    dm = TextDataModule("file", str(path), tokens=tokens, block_size=16, batch_size=4)
    assert dm.vocab_size == (len(set(text)) if tokens == "char" else 256)
    dm.setup()
    data = dm.encode(text)
    assert dm.decode(data) == text
    cut = int(len(data) * 0.9)
    windows = [torch.cat([x, y[-1:]]) for x, y in dm.train_set]
    assert len(windows) == (cut - 1) // 16
    for i, window in enumerate(windows):
        assert torch.equal(window, data[i * 16 : i * 16 + 17])
    x, y = next(iter(dm.val_dataloader()))
    assert torch.equal(x[0], data[cut : cut + 16]) and torch.equal(y[0], data[cut + 1 : cut + 17])


def test_lora_study_runs_on_a_pretrained_base(tmp_path):
    small = [
        "--data.init_args.train_sequences=8",
        "--data.init_args.val_sequences=4",
        "--data.init_args.batch_size=4",
        "--trainer.max_steps=2",
    ]
    pretrain = run_fit(
        "--config=experiment/gpt_copy", "--config=method/dense", *small, root=tmp_path / "base"
    )
    summary = run_fit(
        "--config=experiment/lora_gpt_permute",
        "--config=method/wd_off_at_50",
        f"--model.init_args.init_from={pretrain['checkpoint']}",
        *small,
        root=tmp_path / "lora",
    )
    assert summary["checkpoint"].endswith(".ckpt")


# Synthetic problems ---------------------------------------------------------------------------


def test_sparse_regression_is_the_methods_problem():
    dm = SparseRegressionDataModule(samples=40, dim=100, nonzeros=5, seed=3)
    assert (dm.x_star != 0).sum() == 5 and set(dm.x_star[dm.x_star != 0].tolist()) <= {-1.0, 1.0}
    ((x, y),) = list(dm.train_dataloader())  # full batch: one batch of every sample
    assert x.shape == (40, 100) and y.shape == (40, 1) and x.dtype == torch.float32
    assert torch.allclose(y[:, 0], x @ dm.x_star)
    assert abs(float(dm.val_inputs.var()) * 40 - 1) < 0.05  # A ~ N(0, 1/samples)
    same, other = SparseRegressionDataModule(seed=3), SparseRegressionDataModule(seed=4)
    assert torch.equal(same.inputs, dm.inputs) and torch.equal(same.x_star, dm.x_star)
    assert not torch.equal(other.x_star, dm.x_star)
    minibatch = SparseRegressionDataModule(batch_size=8, passes_per_epoch=3)
    assert len(list(minibatch.train_dataloader())) == 15
    assert len(SparseRegressionDataModule(passes_per_epoch=7).train_dataloader()) == 7
    noisy = SparseRegressionDataModule(seed=3, noise=0.1)
    assert not torch.allclose(noisy.targets, dm.targets)
    assert torch.equal(noisy.val_targets, dm.val_targets)  # validation stays noiseless


def test_matrix_sensing_and_sparse_coding_truths():
    sensing = MatrixSensingDataModule(samples=50, rows=6, cols=5, rank=2)
    singular = torch.linalg.svdvals(sensing.x_star)
    assert torch.allclose(singular[:2], torch.ones(2), atol=1e-5) and singular[2] < 1e-5
    ((a, y),) = list(sensing.train_dataloader())
    assert a.shape == (50, 6, 5) and y.shape == (50, 1)
    assert torch.allclose(y[:, 0], torch.einsum("nij,ij->n", a, sensing.x_star), atol=1e-6)
    coding = SparseCodingDataModule(signal_dim=8, atoms=20, signals=3, nonzeros=2)
    assert coding.x_star.shape == (20, 3) and ((coding.x_star != 0).sum(0) == 2).all()
    ((d, y),) = list(coding.train_dataloader())
    assert d.shape == (8, 20) and torch.allclose(y, d @ coding.x_star)


@pytest.mark.parametrize("experiment", ["sparse_regression", "matrix_sensing", "sparse_coding"])
def test_synthetic_experiments_fit(experiment, tmp_path):
    summary = run_fit(
        f"--config=experiment/{experiment}",
        "--config=method/dense",
        "--data.init_args.passes_per_epoch=5",
        "--trainer.max_epochs=2",
        root=tmp_path / "runs",
    )
    assert summary["sparsity"] < 0.01


def test_sparse_regression_through_the_trainer_lowers_the_recovery_error(tmp_path):
    """The shipped lr on the MSE is stable and moves θ towards x*."""
    from helpers import trainer
    from sparsify.lightning.module import Regressor

    config = yaml.safe_load(prepare_argv(["fit", "--config", "experiment/sparse_regression"])[2])
    dm = SparseRegressionDataModule(**{**config["data"]["init_args"], "passes_per_epoch": 300})
    model = Regressor(**config["model"]["init_args"])
    run = trainer(tmp_path, [], max_epochs=1, enable_checkpointing=False, limit_val_batches=0)
    run.fit(model, dm)
    error = torch.linalg.norm(model.model.weight[0] - dm.x_star) / torch.linalg.norm(dm.x_star)
    assert math.isfinite(float(error)) and error < 0.9


# Configs --------------------------------------------------------------------------------------

EXPERIMENTS = sorted(name for name in shipped_configs() if name.startswith("experiment/"))


def test_every_experiment_composes_with_every_method():
    methods = [name for name in shipped_configs() if name.startswith("method/")]
    assert len(EXPERIMENTS) >= 10 and methods
    for experiment in EXPERIMENTS:
        own = yaml.safe_load(prepare_argv(["fit", "--config", experiment])[2])
        for method in methods:
            composed = yaml.safe_load(
                prepare_argv(["fit", "--config", experiment, "--config", method])[2]
            )
            assert composed["data"] == own["data"]
            assert composed["model"]["class_path"] == own["model"]["class_path"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_configs_parse(experiment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", experiment, "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["class_path"].startswith("sparsify.datamodules.")


def test_digits_at_32_pixels_with_cifar_crops():
    """image_size=32: the 8×8 digits upsampled for the CIFAR ResNets; augment: random crops
    padded with the (standardized) background, on the training images only."""
    plain, big = DigitsDataModule(), DigitsDataModule(image_size=32, augment=True)
    plain.setup(), big.setup()
    image, label = big.train_set[0]
    assert image.shape == (1, 32, 32) and big.test_set[0][0].shape == (1, 32, 32)
    assert label == plain.train_set[0][1]  # the same split
    torch.manual_seed(0)
    assert len({big.train_set[0][0].sum().item() for _ in range(20)}) > 1  # crops differ
    assert torch.equal(big.val_set[0][0], big.val_set[0][0])  # evaluation is not augmented
    evaluation = torch.stack([big.val_set[i][0] for i in range(len(big.val_set))])
    background = evaluation.min().item()  # pixel 0, standardized
    assert big.train_set.transform.padding == 4
    assert big.train_set.transform.fill == pytest.approx(background, abs=1e-5)
    with pytest.raises(ConfigError, match=r"image_size=4 is invalid: an integer >= 8"):
        DigitsDataModule(image_size=4)
