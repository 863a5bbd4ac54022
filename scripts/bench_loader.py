"""Images per second of the two loaders of the image datamodules, in one run: ``loader="device"``
(one uint8 tensor, a vectorized gather per batch) against ``loader="torch"`` (a per-image
``Dataset`` with torchvision transforms in a ``DataLoader``). Not a test: run it and paste the
markdown it prints into docs/performance.md.

    python scripts/bench_loader.py [--batch 128] [--batches 150] [--workers 0 2]

Fashion-MNIST is read from where ``FashionMNISTDataModule`` finds it (``--fashion-mnist-dir``,
else Debian's ``dataset-fashion-mnist``). CIFAR-10 cannot be downloaded everywhere: the script
writes 50,000 + 10,000 random images in CIFAR's own on-disk format (torchvision's python
pickles) into a temporary folder, and the md5 sums torchvision checks become those of the
written files. Both datamodules load the training split with their augmentation (random crop
with padding, horizontal flip) and normalization; the loaders are timed on the same number of
training batches, after one batch of warm-up, in interleaved rounds, on the device the batches
are for (the GPU when there is one: the per-image batches are copied there as Lightning would).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10

from sparsify.datamodules import CIFARDataModule, FashionMNISTDataModule


def write_cifar10(root: Path, seed: int = 0) -> Path:
    """Random CIFAR-10 in torchvision's layout (5 training batches of 10,000, a test batch,
    ``batches.meta``); points torchvision's md5 check at the written files."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name, _ in CIFAR10.train_list + CIFAR10.test_list:
        entry = {
            "data": rng.integers(0, 256, (10_000, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, 10_000).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / CIFAR10.meta["filename"]).write_bytes(pickle.dumps(meta, protocol=2))
    md5 = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in folder.iterdir()}
    CIFAR10.train_list = [[name, md5[name]] for name, _ in CIFAR10.train_list]
    CIFAR10.test_list = [[name, md5[name]] for name, _ in CIFAR10.test_list]
    CIFAR10.meta = {**CIFAR10.meta, "md5": md5[CIFAR10.meta["filename"]]}
    return root


def images_per_second(loader, batches: int, device: torch.device) -> float:
    iterator = iter(loader)
    next(iterator)  # warm-up: workers started, first gather done
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        x, y = next(iterator)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        count += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=150, help="timed batches per loader")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved; the median is shown")
    parser.add_argument("--fashion-mnist-dir", default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    with tempfile.TemporaryDirectory() as tmp:
        cifar_dir = str(write_cifar10(Path(tmp)))
        datamodules = {
            "Fashion-MNIST": lambda **kw: FashionMNISTDataModule(
                args.fashion_mnist_dir, batch_size=args.batch, augment=True, **kw
            ),
            "CIFAR-10": lambda **kw: CIFARDataModule(
                data_dir=cifar_dir, batch_size=args.batch, augment=True, **kw
            ),
        }
        rows = []
        for name, make in datamodules.items():
            device_dm = make(loader="device")
            device_dm.setup()
            loaders = {"device": device_dm.train_dataloader().to(device)}  # as on a Trainer's
            for workers in args.workers:
                torch_dm = make(loader="torch", num_workers=workers, persistent_workers=False)
                torch_dm.setup()
                loaders[workers] = torch_dm.train_dataloader()
            # Interleaved rounds, so a change in the machine's load hits every loader alike.
            rates = {key: [] for key in loaders}
            for _ in range(args.rounds):
                for key, loader in loaders.items():
                    rates[key].append(images_per_second(loader, args.batches, device))
            median = {key: statistics.median(values) for key, values in rates.items()}
            rows.append((name, median.pop("device"), median))

    print(
        f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
        f"device {device}, batch {args.batch}, median of {args.rounds} rounds of "
        f"{args.batches} batches, augmentation on; ratio: against the faster per-image loader\n"
    )
    print("| data | device loader (images/s) | per-image loader (images/s) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, fast, per_image in rows:
        slow = ", ".join(f"{v:,.0f} ({w} workers)" for w, v in per_image.items())
        print(f"| {name} | {fast:,.0f} | {slow} | {fast / max(per_image.values()):.1f}× |")


if __name__ == "__main__":
    main()
