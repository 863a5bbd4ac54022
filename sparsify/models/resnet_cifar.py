"""CIFAR ResNets of He et al. (2016), §4.2: 3 stages of n basic blocks, 16/32/64 channels,
depth 6n + 2 (ResNet-20: n = 3). Shortcuts are option A (identity with zero-padded channels and
stride-2 subsampling, parameter-free) by default, as in the paper; option B uses 1×1 conv + BN.
"""

import torch.nn.functional as F
from torch import nn

from sparsify.errors import ConfigError
from sparsify.models import register_model
from sparsify.models.init import initialize


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        self.pad = 0
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.pad = planes - in_planes
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
                )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad:
            identity = x[:, :, ::2, ::2]
            identity = F.pad(identity, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        else:
            identity = self.shortcut(x)
        return F.relu(out + identity)


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, shortcut: str = "A", in_channels=3):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ConfigError(f"depth={depth} is invalid for a CIFAR ResNet: must be 6n + 2")
        if shortcut not in ("A", "B"):
            raise ConfigError(f"shortcut={shortcut!r} is invalid: choose A or B")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, shortcut))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def _make(depth):
    def build(num_classes=10, shortcut="A", in_channels=3, init="kaiming_normal"):
        return initialize(CifarResNet(depth, num_classes, shortcut, in_channels), init)

    build.__doc__ = f"CIFAR ResNet-{depth} (He et al. 2016), option {{A, B}} shortcuts."
    return build


for _depth in (20, 32, 44, 56, 110):
    register_model(f"resnet{_depth}")(_make(_depth))


@register_model("resnet20_gray")
def resnet20_gray(num_classes=10, shortcut="A", init="kaiming_normal"):
    """CIFAR ResNet-20 with one input channel, for grayscale images (Fashion-MNIST's 28×28:
    the stages run at 28, 14 and 7 pixels)."""
    return _make(20)(num_classes, shortcut, in_channels=1, init=init)
