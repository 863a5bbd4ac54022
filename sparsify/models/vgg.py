"""VGG with batch normalization for CIFAR (Simonyan & Zisserman 2015; the CIFAR variant used
by the pruning-at-initialization papers, e.g. SNIP, GraSP, SynFlow): 3×3 convolutions with BN
and ReLU, five 2×2 max-pools, global average pooling and one linear classifier (at 32 × 32 the
feature map is already 1 × 1, so the pooling only makes other input sizes work).
"""

from __future__ import annotations

import torch
from torch import nn

from sparsify.models import register_model
from sparsify.models.init import initialize

CONFIGS = {
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"]
    + [512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, config: list, num_classes: int, in_channels: int = 3):
        super().__init__()
        layers, channels = [], in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [
                    nn.Conv2d(channels, item, 3, padding=1, bias=False),
                    nn.BatchNorm2d(item),
                    nn.ReLU(inplace=True),
                ]
                channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _make(depth: int):
    def build(num_classes: int = 10, in_channels: int = 3, init: str = "kaiming_normal"):
        return initialize(VGG(CONFIGS[depth], num_classes, in_channels), init)

    build.__doc__ = f"VGG-{depth}-BN for CIFAR (32 × 32), one linear classifier."
    return build


for _depth in CONFIGS:
    register_model(f"vgg{_depth}_bn")(_make(_depth))
