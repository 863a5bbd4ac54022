"""The networks of the classic pruning papers on 28×28 grayscale images (MNIST, Fashion-MNIST):
LeNet-300-100 and the Caffe variant of LeNet-5 (LeCun et al. 1998; as pruned by Han et al. 2015,
SNIP, and the lottery-ticket papers).

LeNet-300-100: 784 → 300 → 100 → 10, ReLU; 266,200 weights (784·300 + 300·100 + 100·10).
LeNet-5 (Caffe): conv 5×5 (1 → 20), max-pool 2, conv 5×5 (20 → 50), max-pool 2, fc 800 → 500,
fc 500 → 10; 430,500 weights (500 + 25,000 + 400,000 + 5,000). Caffe's prototxt has no ReLU after
the convolutions; like the PyTorch and TensorFlow ports the pruning papers use (SNIP's among
them) we put one after each convolution and after fc 500.
"""

from torch import nn

from sparsify.models import register_model
from sparsify.models.init import initialize


@register_model("lenet_300_100")
def lenet_300_100(
    num_classes: int = 10, in_features: int = 784, init: str = "kaiming_normal"
) -> nn.Module:
    """flatten → fc(in_features → 300) → fc(300 → 100) → fc(100 → num_classes), ReLU between."""
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, 300),
        nn.ReLU(inplace=True),
        nn.Linear(300, 100),
        nn.ReLU(inplace=True),
        nn.Linear(100, num_classes),
    )
    return initialize(model, init)


@register_model("lenet5")
def lenet5(num_classes: int = 10, in_channels: int = 1, init: str = "kaiming_normal") -> nn.Module:
    """conv5×5(→20) → pool → conv5×5(20→50) → pool → fc(800→500) → fc(500→num_classes), for
    28×28 inputs (24 → 12 → 8 → 4 pixels a side)."""
    model = nn.Sequential(
        nn.Conv2d(in_channels, 20, 5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(50 * 4 * 4, 500),
        nn.ReLU(inplace=True),
        nn.Linear(500, num_classes),
    )
    return initialize(model, init)
