"""Reparametrize every prunable weight as θ = m ⊙ w before the optimizer is built."""

from __future__ import annotations

from torch import nn

from sparsify.reparam import check_beta, reparametrize
from sparsify.rules.base import LayerRule


class Reparametrize(LayerRule):
    """Apply ``sparsify.reparametrize(model, beta, include, exclude)`` before the optimizer is
    built, so that the trainable ``m, w`` are what the optimizer sees. β = 1 is the PILoT /
    Sign-In initialization, β = 0 the balanced spred split. Idempotent, so it may run in every
    stage (fit, validate, test) and before a checkpoint loads.

    Args:
        beta: the inner scale β = m² − w² of the split (1: PILoT and Sign-In; 0: spred).
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
    """

    def __init__(self, beta: float = 1.0, include: list | None = None, exclude: list | None = None):
        check_beta(beta)
        self.beta = beta
        self.include = include
        self.exclude = exclude

    def prepare(self, model: nn.Module) -> None:
        reparametrize(model, self.beta, self.layers(model))
