"""Weight initialization shared by the registered models."""

from typing import Literal, get_args

from torch import nn

from sparsify.errors import check_choice

Init = Literal["kaiming_normal", "default"]
INITS = get_args(Init)


def initialize(model: nn.Module, init: Init = "kaiming_normal") -> nn.Module:
    """Kaiming normal (fan_out, ReLU) on conv and linear weights, zero biases, BN γ=1 β=0,
    as in the papers; ``"default"`` keeps PyTorch's own initialization."""
    check_choice("init", init, Init)
    if init == "default":
        return model
    for layer in model.modules():
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if layer.weight is not None:
                nn.init.ones_(layer.weight)
                nn.init.zeros_(layer.bias)
    return model
