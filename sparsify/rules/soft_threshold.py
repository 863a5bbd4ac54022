"""STR: soft threshold reparameterization with a learned threshold per layer.

Kusupati et al., "Soft Threshold Weight Reparameterization for Learnable Sparsity" (ICML 2020):
every weight is used as θ = sign(w) · relu(|w| − g(s)) with g = sigmoid and one trainable s per
layer. Weights whose magnitude falls below g(s) are exactly 0 and get no gradient from the loss;
the thresholds, and so each layer's sparsity, are learned along with the weights. Weight decay
on s pulls it from ``s_init`` up towards 0, raising the threshold over training.

Where we differ from the reference (RAIVNLab/STR): there, s sits in an SGD group whose weight
decay is the model's own (``st_decay`` unset), so one λ drives both the weights and the
thresholds; here λ_s is a separate ``threshold_weight_decay`` by default (sparsify's modules put
0-dim parameters in the no-decay group), and ``threshold_weight_decay=None`` couples it as
there.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsify.errors import ConfigError
from sparsify.masks import sparsity_report
from sparsify.rules.base import LayerRule, Run
from sparsify.soft_masks import SoftThreshold, harden, soft_masks, soft_threshold
from sparsify.state import unmasked_weight


class SoftThresholdReparametrization(LayerRule):
    """Install STR's ``SoftThreshold`` on every selected weight in ``prepare`` (before the
    optimizers are built, so they see the thresholds s), and ``harden`` it when training ends:
    a plain ``Mask`` with w = θ and mask = 1[θ ≠ 0], so the exact zeros stay and the model
    collapses and exports like any other masked model.

    Args:
        s_init: initial threshold parameter; g(s_init) = sigmoid(s_init) is the initial threshold
            on |w| (−5: 0.0067, well below typical Kaiming weights).
        threshold_weight_decay: L2 penalty λ_s on s, added to its gradient before every optimizer
            step (``+ λ_s · s``) on top of whatever the user's optimizer does with s. ``None``:
            coupled, as in the reference (RAIVNLab/STR, main.py: the thresholds' SGD group gets
            ``st_decay`` if given, else the model's ``weight_decay``): λ_s is, at every step,
            the weight decay of the optimizer group holding the layer's weight.
        include: the layers to act on, as module-name patterns (fnmatch, e.g. ``"layer1.*"``) or
            module types (``sparsify.reparam.prunable_layers``); ``None``: every conv / linear.
        exclude: module-name patterns or types left out of ``include``.
        harden_at_end: replace the soft thresholds by masks when training ends.

    Logs ``str/sparsity`` (zero fraction of θ) and ``str/threshold`` (mean g(s)) every epoch.
    The thresholds are model parameters, so checkpoints and resumed runs keep them.
    """

    def __init__(
        self,
        s_init: float = -5.0,
        threshold_weight_decay: float | None = 0.0,
        include: list | None = None,
        exclude: list | None = None,
        harden_at_end: bool = True,
    ):
        if threshold_weight_decay is not None and not threshold_weight_decay >= 0:
            raise ConfigError(
                f"threshold_weight_decay={threshold_weight_decay!r} is invalid: must be >= 0, "
                "or null for the weights' own weight decay (coupled)"
            )
        self.s_init = float(s_init)
        self.threshold_weight_decay = (
            None if threshold_weight_decay is None else float(threshold_weight_decay)
        )
        self.include, self.exclude = include, exclude
        self.harden_at_end = harden_at_end

    def prepare(self, model: nn.Module) -> None:
        soft_threshold(model, self.s_init, self.layers(model))

    def before_optimizer_step(self, run: Run) -> None:
        self.decay_thresholds(run.model, run.optimizers)

    @torch.no_grad()
    def decay_thresholds(self, model: nn.Module, optimizers: list) -> None:
        """Add λ_s · s to the gradient of every threshold s (coupled: λ_s the weight decay of
        the group of ``optimizers`` holding the layer's weight)."""
        for name, soft in soft_masks(model, SoftThreshold):
            if soft.threshold.grad is None:
                continue
            decay = self.threshold_weight_decay
            if decay is None:
                weight = unmasked_weight(model.get_submodule(name))
                decay = group_weight_decay(optimizers, weight)
            if decay:
                soft.threshold.grad.add_(soft.threshold, alpha=decay)

    def epoch_end(self, run: Run) -> dict[str, float] | None:
        thresholds = [torch.sigmoid(s.threshold) for _, s in soft_masks(run.model, SoftThreshold)]
        if not thresholds:
            return None
        return {
            "str/threshold": float(torch.stack(thresholds).mean()),
            "str/sparsity": sparsity_report(run.model, self.layers(run.model))["global"],
        }

    def end(self, run: Run) -> None:
        if self.harden_at_end:
            harden(run.model)


def group_weight_decay(optimizers: list, param: torch.Tensor) -> float:
    """The ``weight_decay`` of the param group (of the first of ``optimizers`` that has one) that
    holds ``param`` (0 if none)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            if any(p is param for p in group["params"]):
                return float(group.get("weight_decay", 0.0))
    return 0.0
