"""Batches gathered from one uint8 image tensor kept on the accelerator: no per-image Python,
no worker processes, no host-to-device copy of pixels after the first.

Each batch is one vectorized gather of indices: ``images[idx]`` (with a random crop, one gather
of the crops' rows from the zero-padded images, and a random flip), then
``(x / 255 − mean) / std`` per channel.
The order of an epoch is one permutation of ``seed + epoch`` shared by every rank, each rank
taking a disjoint shard of it as ``torch.utils.data.DistributedSampler`` does (padded by
repeating the first indices so every rank gets as many). The crop offsets and flips of an epoch
are drawn per image from the seed and the epoch, so an image is augmented the same way whichever
rank it falls on and whatever the number of ranks.

Lightning hands an iterable that is not a ``DataLoader`` to the loop as it is (no distributed
sampler is injected), asks its ``__len__`` for the number of batches, and calls
``set_epoch`` on its ``sampler`` at the start of every epoch, as for a ``DataLoader``.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager

import torch
import torch.nn.functional as F

# Offset of the augmentation's random stream from the order's, so the two never share a seed.
AUGMENT_STREAM = 1 << 40


class ShardSampler:
    """The indices of one rank for an epoch, as ``DistributedSampler(drop_last=False)``:
    a permutation of ``range(size)`` from ``seed + epoch`` (``range(size)`` itself without
    ``shuffle``), padded to a multiple of ``world_size`` by repeating its start, of which rank
    ``r`` takes the positions ``r, r + world_size, …``.

    Args:
        size: number of items.
        shuffle: a new permutation every epoch; otherwise the items in order.
        seed: seed of the permutation, the same on every rank.
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} is invalid: must be in [0, world_size={world_size})")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size)

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            order = torch.randperm(self.size, generator=seeded(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        padding = len(self) * self.world_size - self.size
        if padding:
            order = torch.cat([order, order.repeat(math.ceil(padding / self.size))[:padding]])
        return order[self.rank :: self.world_size]


class DeviceBatches:
    """An iterable of normalized ``(images, labels)`` batches gathered on ``images``' device.

    Args:
        images: ``N × C × H × W`` uint8 pixels.
        labels: ``N`` class indices.
        mean, std: per-channel mean and standard deviation of the pixels scaled to [0, 1].
        batch_size: images per batch (the last batch of a shard may be smaller).
        shuffle: a new order every epoch (the ``sampler``'s ``set_epoch``).
        crop_padding: a random ``H × W`` crop of the image zero-padded by this many pixels on
            each side (He et al. 2016); 0: no crop.
        flip: a random horizontal flip, with probability 1/2.
        seed: seed of the order and the augmentation; the same on every rank.
        rank, world_size: this process's shard (``ShardSampler``).
        device: where the images are kept and the batches built; default ``images``' device.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        batch_size: int,
        shuffle: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be N × C × H × W uint8, not {images.dtype} {images.shape}"
            )
        channels = images.shape[1]
        mean, std = torch.tensor(mean), torch.tensor(std)
        # (x / 255 - mean) / std as one multiply-add: x * scale - shift.
        self.scale = (1 / (255 * std)).view(1, channels, 1, 1)
        self.shift = (mean / std).view(1, channels, 1, 1)
        self.images, self.labels = images, labels.long()
        # Padded once, so a cropped batch is one gather from the padded images.
        pad = crop_padding
        self.padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
        self.batch_size, self.crop_padding, self.flip = batch_size, crop_padding, flip
        self.sampler = ShardSampler(len(images), shuffle, seed, rank, world_size)
        self.batch_sampler = None  # a DataLoader's attribute, which Lightning's checks read
        if device is not None:
            self.to(device)

    def to(self, device: torch.device | str) -> DeviceBatches:
        """Keep the images (and build the batches) on ``device``."""
        for name in ("images", "padded", "labels", "scale", "shift"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        device = self.images.device
        order = self.sampler.indices().to(device)
        offsets, flips = self._augmentation(device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            with one_thread_on_cpu(device):
                if offsets is None:
                    pixels = self.images.index_select(0, idx)
                else:
                    pixels = self._crop_and_flip(idx, offsets[idx], flips[idx])
                batch = pixels.float().mul_(self.scale).sub_(self.shift), self.labels[idx]
            yield batch

    def _augmentation(self, device):
        """Each image's crop offset (row, column) and flip for this epoch, or ``(None, None)``."""
        if not self.crop_padding and not self.flip:
            return None, None
        size, sampler = len(self.images), self.sampler
        generator = seeded(sampler.seed + sampler.epoch + AUGMENT_STREAM)
        offsets = torch.randint(0, 2 * self.crop_padding + 1, (size, 2), generator=generator)
        flips = torch.randint(0, 2, (size,), generator=generator).bool() & self.flip
        return offsets.to(device), flips.to(device)

    def _crop_and_flip(self, idx, offsets, flips):
        """Pixel (i, c, y, x) of the batch is pixel (c, oy + y, ox + x) of image ``idx[i]``
        zero-padded, then mirrored (x → W − 1 − x) where the image is flipped. A crop's row is
        W contiguous pixels of the padded images: one ``index_select`` of the row windows."""
        _, channels, height, width = self.images.shape
        padded_height, padded_width = self.padded.shape[2:]
        device, batch = idx.device, len(idx)
        windows = self.padded.view(-1).unfold(0, width, 1)  # row k: pixels k .. k + W - 1
        planes = idx[:, None] * channels + torch.arange(channels, device=device)
        rows = offsets[:, None, :1] + torch.arange(height, device=device)
        starts = (planes[:, :, None] * padded_height + rows) * padded_width + offsets[:, None, 1:]
        crops = windows.index_select(0, starts.view(-1)).view(batch, channels, height, width)
        if not self.flip:
            return crops
        return torch.where(flips[:, None, None, None], crops.flip(-1), crops)


@contextmanager
def one_thread_on_cpu(device: torch.device):
    """Build a batch on one CPU thread. Its operations are small (a batch of pixels), and
    where other processes load the cores, each parallel region of PyTorch's thread pool waits
    for a thread to be scheduled: measured 100x slower with 2 threads than with 1 on a loaded
    2-core machine. The training step outside keeps its threads."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_seed(default: int) -> int:
    """The run's seed as ``seed_everything`` set it (the same on every rank), else ``default``."""
    return int(os.environ.get("PL_GLOBAL_SEED", default))


def placement(trainer) -> tuple[torch.device, int, int]:
    """The device, rank and number of ranks a datamodule's batches are for: the trainer's
    root device and distributed-sampler settings, or the CPU, 0 and 1 without a trainer."""
    if trainer is None:
        return torch.device("cpu"), 0, 1
    shard = trainer.distributed_sampler_kwargs or {}
    return trainer.strategy.root_device, shard.get("rank", 0), shard.get("num_replicas", 1)
