"""A small CNN for 8×8 single-channel images (scikit-learn's digits)."""

from torch import nn

from sparsify.models import register_model
from sparsify.models.init import initialize


@register_model("cnn_digits")
def cnn_digits(num_classes: int = 10, width: int = 32, init: str = "kaiming_normal") -> nn.Module:
    """conv3×3(1→w) → conv3×3(w→2w) → pool → conv3×3(2w→2w) → pool → fc(8w→4w) → fc."""
    model = nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * width, 4 * width),
        nn.ReLU(inplace=True),
        nn.Linear(4 * width, num_classes),
    )
    return initialize(model, init)
