"""torchvision ResNets (He et al. 2016): ResNet-50 for ImageNet (224 × 224), and ResNet-18/34/50
with the CIFAR stem (32 × 32): the 7×7 stride-2 convolution and the max-pool replaced by one 3×3
stride-1 convolution, as in the CIFAR-100 ResNet-18 of the sparsity papers.

They are ``torchvision.models.ResNet`` instances with torchvision's layer names, so a collapsed
``resnet50`` loads into ``torchvision.models.resnet50(num_classes=...)`` without sparsify.
"""

from __future__ import annotations

from torch import nn
from torchvision import models

from sparsify.models import register_model
from sparsify.models.init import initialize


@register_model("resnet50")
def resnet50(num_classes: int = 1000, init: str = "kaiming_normal") -> nn.Module:
    """torchvision ResNet-50 for ImageNet (bottleneck stride on the 3×3 convolution, v1.5)."""
    return initialize(models.resnet50(weights=None, num_classes=num_classes), init)


def _make(depth: int):
    def build(num_classes: int = 100, in_channels: int = 3, init: str = "kaiming_normal"):
        model = getattr(models, f"resnet{depth}")(weights=None, num_classes=num_classes)
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
        return initialize(model, init)

    build.__doc__ = f"torchvision ResNet-{depth} with the CIFAR stem (3×3 conv, no max-pool)."
    return build


for _depth in (18, 34, 50):
    register_model(f"resnet{_depth}_cifar")(_make(_depth))
