"""STR's threshold weight decay: separate λ_s (default) or coupled to the weights' (reference)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsify import ConfigError
from sparsify.callbacks import SoftThresholdReparametrization
from sparsify.soft_masks import SoftThreshold, soft_masks, soft_threshold


def str_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    soft_threshold(net, s_init=-2.0)
    return net


def groups(net, threshold_decay):
    thresholds = [soft.threshold for _, soft in soft_masks(net, SoftThreshold)]
    weights = [layer.parametrizations.weight.original for layer in (net[0], net[2])]
    biases = [net[0].bias, net[2].bias]
    return [
        {"params": weights, "weight_decay": 0.01},
        {"params": biases + thresholds, "weight_decay": 0.0}
        if threshold_decay is None
        else {"params": biases, "weight_decay": 0.0},
        *([] if threshold_decay is None else [{"params": thresholds, "weight_decay": 0.01}]),
    ]


def test_coupled_threshold_decay_is_the_references_optimizer_group():
    """Conformance with RAIVNLab/STR, main.py ``get_optimizer``: the thresholds
    (``sparseThreshold``) form an SGD group with ``weight_decay = args.weight_decay`` when
    ``st_decay`` is unset. Ours: s in sparsify's no-decay group, and the callback adds the
    weights' group's decay to the gradient of s before each step. Three SGD steps with
    momentum agree."""
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    ours, reference = str_net(), str_net()
    callback = SoftThresholdReparametrization(threshold_weight_decay=None)
    ours_opt = torch.optim.SGD(groups(ours, None), lr=0.1, momentum=0.9)
    reference_opt = torch.optim.SGD(groups(reference, "coupled"), lr=0.1, momentum=0.9)
    for _ in range(3):
        for net, opt in ((ours, ours_opt), (reference, reference_opt)):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
        callback.on_before_optimizer_step(None, ours, ours_opt)
        ours_opt.step()
        reference_opt.step()
    for a, b in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)
    separate = str_net()
    opt = torch.optim.SGD(groups(separate, None), lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(separate(x), y).backward()
        opt.step()
    s = [soft.threshold for _, soft in soft_masks(ours, SoftThreshold)]
    s_without = [soft.threshold for _, soft in soft_masks(separate, SoftThreshold)]
    assert all(a > b for a, b in zip(s, s_without))  # the decay pulls s (< 0) up towards 0


def test_negative_threshold_decay_is_refused():
    with pytest.raises(ConfigError, match="threshold_weight_decay=-1.0 is invalid"):
        SoftThresholdReparametrization(threshold_weight_decay=-1.0)
