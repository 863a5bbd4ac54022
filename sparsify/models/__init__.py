"""Model registry: ``create_model(name, num_classes=..., **kwargs)``; names in ``available()``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from sparsify.errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator adding a model constructor to the registry under ``name``."""

    def add(fn):
        _REGISTRY[name] = fn
        return fn

    return add


def available() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(available())}")
    return _REGISTRY[name](num_classes=num_classes, **kwargs)


from sparsify.models import (  # noqa: E402,F401  (registers the models)
    cnn,
    gpt,
    lenet,
    resnet,
    resnet_cifar,
    synthetic,
    vgg,
    vit,
)
