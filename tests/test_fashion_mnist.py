"""Fashion-MNIST on tiny files written in the idx format (gzipped and raw), and the device loader
(``DeviceBatches``): shapes, normalization, the crop and flip checked against a per-image
re-derivation and for uniformity, reproducibility, disjoint DDP shards, and Lightning's loop."""

import gzip
import math
import re
import struct
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import RecordBatches, fit_error, run_two_ranks, trainer
from sparsify.app.cli import main
from sparsify.datamodules import FashionMNISTDataModule
from sparsify.datamodules.device_loader import DeviceBatches, ShardSampler
from sparsify.datamodules.fashion_mnist import MEAN, STD
from sparsify.errors import ConfigError

TESTS = Path(__file__).parent

QUIET = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.logger=false",
]
NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: torch.Tensor) -> bytes:
    """The idx format: magic 0x000008 <ndim> (unsigned bytes), big-endian sizes, the bytes."""
    header = struct.pack(f">I{array.dim()}I", 0x0800 + array.dim(), *array.shape)
    return header + array.numpy().tobytes()


def write_fashion_mnist(folder, train=40, test=12, gz=True, seed=0):
    """Four idx files of random pixels and labels, pixel (0, 0) of image i = i (an id);
    returns ``{split: (images, labels)}``."""
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count in (("train", train), ("test", test)):
        images = torch.randint(0, 256, (count, 28, 28), generator=generator, dtype=torch.uint8)
        images[:, 0, 0] = torch.arange(count)
        labels = torch.randint(0, 10, (count,), generator=generator, dtype=torch.uint8)
        for name, array in zip(NAMES[split], (images, labels)):
            content = idx_bytes(array)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(content))
            else:
                (folder / name).write_bytes(content)
        written[split] = (images, labels.long())
    return written


def normalized(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels.float() / 255 - MEAN[0]) / STD[0]


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
def test_reads_the_idx_files_and_holds_out_a_seeded_validation_split(tmp_path, gz):
    written = write_fashion_mnist(tmp_path, gz=gz)
    dm = FashionMNISTDataModule(str(tmp_path), val_size=10, batch_size=8)
    dm.setup()
    train_x, train_y = dm.device_sets["train"]
    val_x, val_y = dm.device_sets["val"]
    assert (len(train_y), len(val_y)) == (30, 10)
    assert train_x.shape == (30, 1, 28, 28) and train_x.dtype == torch.uint8
    # The official test set as written, in its order; train + val are the training images.
    test_x, test_y = dm.device_sets["test"]
    assert torch.equal(test_x[:, 0], written["test"][0]) and torch.equal(test_y, written["test"][1])
    together = torch.cat([train_x, val_x])[:, 0].flatten(1)
    original = written["train"][0].flatten(1)
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, original.tolist()))
    # The split is decided by the seed.
    other = FashionMNISTDataModule(str(tmp_path), val_size=10, seed=1)
    other.setup()
    assert not torch.equal(other.device_sets["val"][0], val_x)
    # The per-image torch loader reads the same images, the same normalization.
    torch_dm = FashionMNISTDataModule(str(tmp_path), val_size=10, batch_size=8, loader="torch")
    torch_dm.setup()
    device_batches = list(dm.val_dataloader())
    torch_batches = list(torch_dm.val_dataloader())
    assert len(device_batches) == len(torch_batches) == 2
    for (x, y), (tx, ty) in zip(device_batches, torch_batches):
        torch.testing.assert_close(x, tx)
        assert torch.equal(y, ty)


def test_finds_the_files_in_torchvisions_layout(tmp_path):
    written = write_fashion_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    dm = FashionMNISTDataModule(str(tmp_path), val_size=0)
    dm.setup()
    assert dm.device_sets["val"] is dm.device_sets["test"]  # val_size=0: validate on test
    assert torch.equal(dm.device_sets["train"][1].sort().values, written["train"][1].sort().values)


HOW = r"apt-get install dataset-fashion-mnist.* or add --data.init_args.download=true"


def truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


CORRUPTIONS = {
    "missing": (
        lambda folder: (folder / "t10k-labels-idx1-ubyte.gz").unlink(),
        r"t10k-labels-idx1-ubyte' \(or .gz\) is missing",
    ),
    "truncated gzip": (
        lambda folder: truncate(folder / "train-images-idx3-ubyte.gz"),
        r"train-images-idx3-ubyte.gz' is truncated or corrupt",
    ),
    "truncated content": (
        lambda folder: (folder / "train-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(
                gzip.decompress((folder / "train-images-idx3-ubyte.gz").read_bytes())[:-5]
            )
        ),
        r"train-images-idx3-ubyte.gz' is truncated \(",
    ),
    "labels file as images": (
        lambda folder: (folder / "t10k-images-idx3-ubyte.gz").write_bytes(
            (folder / "t10k-labels-idx1-ubyte.gz").read_bytes()
        ),
        r"t10k-images-idx3-ubyte.gz' is not an idx file of this kind \(magic 0x00000801",
    ),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_missing_or_corrupt_file_is_one_line_naming_it_and_how_to_get_the_data(
    case, tmp_path, capsys
):
    data_dir = tmp_path / "fmnist"
    write_fashion_mnist(data_dir)
    corrupt, message = CORRUPTIONS[case]
    corrupt(data_dir)
    with pytest.raises(ConfigError, match=message + ".*" + HOW):
        FashionMNISTDataModule(str(data_dir))
    argv = [
        "--config=data/fashion_mnist",
        "--config=model/lenet5",
        "--config=method/dense",
        f"--data.init_args.data_dir={data_dir}",
    ]
    line = fit_error(argv, tmp_path / "runs", capsys)
    assert re.search(message, line) and re.search(HOW, line), line


def test_no_files_anywhere_names_the_folders_searched(tmp_path):
    with pytest.raises(ConfigError, match=rf"no idx files in '{tmp_path}' or .*raw'; .*{HOW}"):
        FashionMNISTDataModule(str(tmp_path))


# The device loader -----------------------------------------------------------------------------


def test_device_batches_are_float32_normalized_in_order_without_shuffle():
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(10)
    batches = DeviceBatches(images, labels, MEAN, STD, batch_size=4)
    assert len(batches) == 3
    out = list(batches)
    assert [len(y) for _, y in out] == [4, 4, 2]
    x = torch.cat([x for x, _ in out])
    assert x.dtype == torch.float32 and x.shape == (10, 1, 28, 28)
    torch.testing.assert_close(x, normalized(images))
    assert torch.equal(torch.cat([y for _, y in out]), labels)


@pytest.mark.parametrize("padding, flip", [(2, True), (0, True), (3, False)])
def test_crop_and_flip_are_the_padded_image_cropped_and_flipped_per_image(padding, flip):
    """Re-derived per image: zero-pad by p, take rows oy..oy+H, columns ox..ox+W, flip."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (50, 3, 8, 6), generator=generator, dtype=torch.uint8)
    batches = DeviceBatches(
        images, torch.arange(50), (0.5,) * 3, (0.25,) * 3, 16, True, padding, flip
    )
    x = torch.cat([x for x, _ in batches])
    order = batches.sampler.indices()
    offsets, flips = batches._augmentation(torch.device("cpu"))
    assert bool(flips.any()) == flip and bool(offsets.any()) == (padding > 0)
    for position, i in enumerate(order.tolist()):
        (oy, ox), flipped = offsets[i].tolist(), bool(flips[i])
        expected = F.pad(images[i], (padding,) * 4)[:, oy : oy + 8, ox : ox + 6]
        expected = expected.flip(-1) if flipped else expected
        torch.testing.assert_close(x[position], (expected.float() / 255 - 0.5) / 0.25)


def decode_crop(image: torch.Tensor, width: int, padding: int) -> tuple[int, int, bool]:
    """(oy, ox, flipped) of a crop of the image whose pixel (y, x) holds 1 + y·W + x."""
    nonzero = (image > 0).nonzero()
    y, x = nonzero[0].tolist()
    source = int(image[y, x]) - 1
    sy, sx = divmod(source, width)
    flipped = int(image[y, x + 1]) - 1 == source - 1
    ox = sx + padding - (width - 1 - x if flipped else x)
    return sy + padding - y, ox, flipped


def test_crop_offsets_and_flips_are_uniform():
    height = width = 6
    padding, count = 2, 3000
    image = (1 + torch.arange(height * width)).view(1, 1, height, width).to(torch.uint8)
    # mean 0, std 1/255: the batches hold the pixel values themselves.
    batches = DeviceBatches(
        image.expand(count, -1, -1, -1).contiguous(),
        torch.zeros(count),
        (0.0,),
        (1 / 255,),
        batch_size=500,
        shuffle=True,
        crop_padding=padding,
        flip=True,
        seed=3,
    )
    outcomes = [
        decode_crop(crop[0].round().long(), width, padding) for x, _ in batches for crop in x
    ]
    positions = 2 * padding + 1
    for axis in (0, 1):
        counts = torch.bincount(torch.tensor([o[axis] for o in outcomes]), minlength=positions)
        expected = count / positions  # 600, standard deviation about 22
        assert len(counts) == positions and (counts - expected).abs().max() < 0.2 * expected
    flipped = sum(o[2] for o in outcomes)
    assert abs(flipped - count / 2) < 0.1 * count / 2  # standard deviation about 27


def test_device_batches_are_reproducible_under_a_seed_and_reshuffled_every_epoch():
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)

    def epoch(seed, number):
        batches = DeviceBatches(
            images, torch.arange(64), MEAN, STD, 16, True, crop_padding=2, flip=True, seed=seed
        )
        batches.sampler.set_epoch(number)
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    first, again = epoch(seed=5, number=0), epoch(seed=5, number=0)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], epoch(seed=5, number=1)[1])
    assert not torch.equal(first[1], epoch(seed=6, number=0)[1])
    assert sorted(first[1].tolist()) == list(range(64))


@pytest.mark.parametrize("size, world_size", [(12, 2), (11, 2), (10, 3)])
def test_ranks_take_disjoint_shards_of_one_permutation_covering_the_set(size, world_size):
    shards = []
    for rank in range(world_size):
        sampler = ShardSampler(size, shuffle=True, seed=7, rank=rank, world_size=world_size)
        sampler.set_epoch(2)
        shards.append(sampler.indices().tolist())
    per_rank = math.ceil(size / world_size)
    assert all(len(shard) == per_rank for shard in shards)
    together = [i for shard in shards for i in shard]
    assert set(together) == set(range(size))
    padding = per_rank * world_size - size  # repeats, as DistributedSampler pads
    assert len(together) - len(set(together)) == padding
    if padding == 0:
        assert all(not set(a) & set(b) for a in shards for b in shards if a is not b)


def test_an_image_is_augmented_alike_whichever_rank_it_falls_on():
    images = torch.randint(0, 256, (30, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(30)

    def seen(rank, world_size):
        batches = DeviceBatches(
            images, labels, MEAN, STD, 4, True, 2, True, seed=1, rank=rank, world_size=world_size
        )
        batches.sampler.set_epoch(3)
        return {int(i): x for xb, yb in batches for x, i in zip(xb, yb)}

    alone = seen(0, 1)
    ranks = [seen(rank, 2) for rank in range(2)]
    assert not ranks[0].keys() & ranks[1].keys()
    assert ranks[0].keys() | ranks[1].keys() == alone.keys()
    for shard in ranks:
        for i, x in shard.items():
            assert torch.equal(x, alone[i])


def test_two_ddp_ranks_train_on_disjoint_shards_of_one_permutation(tmp_path):
    """Real DDP (gloo, two CPU processes started as torchrun would): Lightning runs the device
    loader itself (no sampler injected), each rank sees its shard, together every training
    image once an epoch, in a new order each epoch."""
    write_fashion_mnist(tmp_path / "data", train=40)
    worker = [sys.executable, str(TESTS / "ddp_device_loader_worker.py")]
    run_two_ranks([*worker, str(tmp_path / "data"), str(tmp_path)], timeout=600)
    records = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert all(record["loader"] == "DeviceBatches" for record in records)
    dm = FashionMNISTDataModule(str(tmp_path / "data"), val_size=8)
    dm.setup()
    train_ids = dm.device_sets["train"][0][:, 0, 0, 0].long()  # the written ids
    for epoch in (0, 1):
        seen = [record["epochs"][epoch] for record in records]
        assert len(seen[0]) == len(seen[1]) == 16
        assert sorted(seen[0] + seen[1]) == sorted(train_ids.tolist())
        for rank in (0, 1):  # the shard of the permutation of the run's seed and the epoch
            sampler = ShardSampler(32, shuffle=True, seed=3, rank=rank, world_size=2)
            sampler.set_epoch(epoch)
            assert seen[rank] == train_ids[sampler.indices()].tolist()
    assert records[0]["epochs"][0] != records[0]["epochs"][1]


def labels(x, y):
    """What a user's module sees of a batch: float images of 1 × 28 × 28; keeps the labels."""
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
    return y


def test_lightning_trainer_runs_the_device_loader_and_sets_its_epoch(tmp_path):
    write_fashion_mnist(tmp_path / "data", train=40)
    dm = FashionMNISTDataModule(str(tmp_path / "data"), val_size=8, batch_size=8, augment=True)
    module = RecordBatches(labels)
    run = trainer(tmp_path, [], max_epochs=2, enable_checkpointing=False)
    run.fit(module, dm)
    assert run.num_training_batches == 4 and len(module.epochs) == 2
    expected = dm.train_dataloader()  # the same seed: the order Lightning saw, epoch by epoch
    for number, seen in enumerate(module.epochs):
        expected.sampler.set_epoch(number)
        assert torch.equal(torch.cat(seen), torch.cat([y for _, y in expected]))
    assert not torch.equal(torch.cat(module.epochs[0]), torch.cat(module.epochs[1]))


def test_sparsify_fit_on_tiny_fashion_mnist(tmp_path):
    write_fashion_mnist(tmp_path / "data", train=40)
    main(
        [
            "fit",
            "--config=data/fashion_mnist",
            "--config=model/lenet_300_100",
            "--config=method/dense",
            f"--data.init_args.data_dir={tmp_path / 'data'}",
            "--data.init_args.val_size=8",
            "--data.init_args.batch_size=8",
            "--trainer.max_epochs=1",
            f"--trainer.default_root_dir={tmp_path / 'runs'}",
            *QUIET,
        ]
    )
    assert next((tmp_path / "runs").rglob("summary.json")).is_file()
