"""Training speed under sparsify against a plain PyTorch loop, on Fashion-MNIST. Not a test: run
it and paste the table it prints into docs/performance.md.

    python scripts/bench_fashion_mnist.py [--models lenet5 lenet_300_100] [--reps 5]

For each model and each variant (``dense``; ``m ⊙ w``: every conv/linear weight reparametrized
by ``sparsify.reparametrize``, β = 1), one epoch is trained twice on the same batches from the
same initialization:

- **sparsify**: ``ImageClassifier`` in a Lightning ``Trainer`` set up as ``sparsify fit`` sets it
  up (``configs/defaults.yaml``: ``ModelCheckpoint(save_last=True)``, ``SparsityMonitor``,
  ``FlopsMonitor``, ``RandomStateCheckpoint``, ``log_every_n_steps=50``, ``NoProfiler``, the
  progress bar (``TimedProgressBar``); a ``CSVLogger``, the logger of ``--wandb=false``; the
  ``Reparametrize`` callback for m ⊙ w),
  data from ``FashionMNISTDataModule(loader="device")``;
- **plain**: the same network from ``create_model`` (and ``reparametrize``) trained by a loop
  written below: forward, cross-entropy, ``zero_grad``, backward, SGD (lr 0.01, momentum 0.9,
  weight decay 5e-4 on the weights, none on the biases, as ``ImageClassifier``'s groups),
  the cosine schedule stepped per batch, over the batches of that datamodule's own train loader.

The two take turns (which goes first alternates), ``--reps`` times, in one process with the same
thread count, so a change in the machine's load hits both. Reported: images per second of the
epoch (wall clock and CPU time of the process; sparsify's clock runs from its
``on_train_epoch_start`` to its ``on_train_epoch_end``, so the trainer's setup and the end-of-epoch
checkpoint are not in it), the medians over the repetitions and the median of the per-repetition
ratios sparsify / plain. The largest difference between the two runs' trained weights is printed
as a check that they trained the same thing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from sparsify.app.progress_bar import TimedProgressBar
from sparsify.callbacks import (
    FlopsMonitor,
    RandomStateCheckpoint,
    Reparametrize,
    SparsityMonitor,
)
from sparsify.datamodules import FashionMNISTDataModule
from sparsify.lightning.module import ImageClassifier, lr_scheduler
from sparsify.lightning.profiler import NoProfiler
from sparsify.models import create_model
from sparsify.reparam import prunable_layers, reparametrize

VARIANTS = ("dense", "m ⊙ w")
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4  # configs/model/lenet5.yaml, lenet_300_100.yaml


class EpochClock(L.Callback):
    """Wall-clock and CPU seconds of the (last) training epoch, and the images it trained on."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = (time.perf_counter(), time.process_time())
        self.images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        wall, cpu = self.start
        self.seconds = (time.perf_counter() - wall, time.process_time() - cpu)


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """The effective weights θ of every conv/linear layer (m ⊙ w where reparametrized)."""
    return [layer.weight.detach().clone() for _, layer in prunable_layers(model)]


def run_sparsify(args, backbone: str, variant: str, folder: str):
    L.seed_everything(args.seed, verbose=False)
    module = ImageClassifier(
        backbone,
        lr=LR,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
        channels_last=args.channels_last,
        compile=args.compile,
    )
    clock = EpochClock()
    callbacks = [
        ModelCheckpoint(save_last=True),
        SparsityMonitor(),
        FlopsMonitor(),
        RandomStateCheckpoint(),
    ]
    if variant == "m ⊙ w":
        callbacks.append(Reparametrize(beta=1.0))
    if not args.no_progress_bar:
        callbacks.append(TimedProgressBar())
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        default_root_dir=folder,
        logger=CSVLogger(folder),
        callbacks=[*callbacks, clock],
        log_every_n_steps=50,
        limit_train_batches=args.batches or 1.0,
        limit_val_batches=0,
        enable_progress_bar=not args.no_progress_bar,
        profiler=NoProfiler(),
    )
    trainer.fit(module, datamodule=datamodule(args))
    return clock.seconds, weights(module.model), clock.images


def run_plain(args, backbone: str, variant: str):
    L.seed_everything(args.seed, verbose=False)
    model = create_model(backbone)
    if variant == "m ⊙ w":
        reparametrize(model, beta=1.0)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if args.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM)
    data = datamodule(args)
    data.setup("fit")
    loader = data.train_dataloader()
    if hasattr(getattr(loader, "sampler", None), "set_epoch"):
        loader.sampler.set_epoch(0)
    steps = min(len(loader), args.batches or len(loader))
    schedule = lr_scheduler(optimizer, "cosine", steps)
    images = 0
    start = (time.perf_counter(), time.process_time())
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        images += len(y)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    seconds = (time.perf_counter() - start[0], time.process_time() - start[1])
    return seconds, weights(model), images


def datamodule(args) -> FashionMNISTDataModule:
    return FashionMNISTDataModule(
        data_dir=args.data_dir, batch_size=args.batch, seed=args.seed, loader="device"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "lenet_300_100"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=0, help="batches an epoch (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="the idx files (default: Debian's)")
    parser.add_argument("--channels-last", action="store_true", help="on both sides")
    parser.add_argument("--compile", action="store_true", help="torch.compile on both sides")
    parser.add_argument("--no-progress-bar", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    results = {}  # (model, variant) -> {"plain": [...], "sparsify": [...]} of (wall, cpu, images)
    with tempfile.TemporaryDirectory() as folder:
        for rep in range(args.reps):
            for backbone in args.models:
                for variant in args.variants:
                    runs = results.setdefault((backbone, variant), {"plain": [], "sparsify": []})
                    order = ("plain", "sparsify") if rep % 2 == 0 else ("sparsify", "plain")
                    trained = {}
                    for side in order:
                        if side == "plain":
                            seconds, theta, images = run_plain(args, backbone, variant)
                        else:
                            seconds, theta, images = run_sparsify(args, backbone, variant, folder)
                        runs[side].append((*seconds, images))
                        trained[side] = theta
                    gap = max(
                        float((a - b).abs().max())
                        for a, b in zip(trained["plain"], trained["sparsify"])
                    )
                    plain, ours = runs["plain"][-1], runs["sparsify"][-1]
                    print(
                        f"rep {rep} {backbone} {variant}: plain {plain[2] / plain[0]:.0f}, "
                        f"sparsify {ours[2] / ours[0]:.0f} images/s (wall), ratio "
                        f"{(ours[2] / ours[0]) / (plain[2] / plain[0]):.2f}; "
                        f"max |θ_plain − θ_sparsify| {gap:.1e}",
                        flush=True,
                    )
    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} threads, load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after; {time.perf_counter() - began:.0f} s in all"
    )
    print(f"Images an epoch: {results[next(iter(results))]['plain'][0][2]}, batch {args.batch}")
    print()
    print(
        "| model | variant | plain (images/s) | sparsify (images/s) | ratio (wall) "
        "| ratio (CPU) | every rep's ratio (wall) |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    for (backbone, variant), runs in results.items():
        plain, ours = runs["plain"], runs["sparsify"]
        wall = [(o[2] / o[0]) / (p[2] / p[0]) for p, o in zip(plain, ours)]
        cpu = [(o[2] / o[1]) / (p[2] / p[1]) for p, o in zip(plain, ours)]
        print(
            f"| {backbone} | {variant} | {statistics.median(p[2] / p[0] for p in plain):.0f} "
            f"| {statistics.median(o[2] / o[0] for o in ours):.0f} "
            f"| **{statistics.median(wall):.2f}** | {statistics.median(cpu):.2f} "
            f"| {', '.join(f'{r:.2f}' for r in wall)} |"
        )


if __name__ == "__main__":
    main()
