"""The global magnitude threshold with a floor on each layer's density (docs/core.md)."""

import pytest
import torch
from torch import nn

from helpers import UserModule, loaders, trainer
from sparsify.callbacks import PruneAtEnd
from sparsify.masks import layer_densities, magnitude_prune, sparsity_report


def wide_small_first_layer() -> nn.Sequential:
    """A first layer holding most weights, all smaller than the second layer's."""
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    with torch.no_grad():
        net[0].weight.mul_(0.01)
    return net


def test_plain_global_threshold_empties_the_small_layer():
    net = wide_small_first_layer()
    magnitude_prune(net, 0.9, "global", layer_floor=0)
    assert sparsity_report(net)["layers"]["0"] > 0.99


def test_the_floor_keeps_each_layer_and_the_global_count():
    net = wide_small_first_layer()
    n = sum(layer.weight.numel() for layer in (net[0], net[2]))
    magnitude_prune(net, 0.9, "global", layer_floor=0.2)
    kept = {name: int((layer.weight != 0).sum()) for name, layer in (("0", net[0]), ("2", net[2]))}
    assert kept["0"] == round(0.02 * 64 * 128)  # raised to the floor, not more
    assert sum(kept.values()) == round(0.1 * n)  # the target is still met exactly
    # the floored layer keeps its own largest weights
    survivors = net[0].weight[net[0].weight != 0].abs()
    assert survivors.min() >= net[0].weight[net[0].weight == 0].abs().max()


def test_layers_above_the_floor_keep_the_global_threshold():
    """Water-filling: a layer is raised only if the global threshold leaves it below the floor."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 32))
    same = layer_densities(net, 0.5, "global")
    floored = layer_densities(net, 0.5, "global", min_density=0.1)
    assert floored == same  # no layer was below 10 %


def test_prune_at_end_floors_by_default_and_warns_without_the_floor(tmp_path):
    def module():
        user = UserModule(lr=0.0)  # the weights stay as set
        with torch.no_grad():
            user.net[0].weight.mul_(0.001)
        return user

    run = trainer(tmp_path, [PruneAtEnd(0.9, layer_floor=0.0)], max_epochs=1)
    with pytest.warns(UserWarning, match=r"layers above 99% sparsity: net\.0"):
        run.fit(module(), *loaders())
    floored = module()
    trainer(tmp_path, [PruneAtEnd(0.9)], max_epochs=1).fit(floored, *loaders())
    kept = 1 - sparsity_report(floored)["layers"]["net.0"]
    assert kept * 256 == round(0.2 * 0.1 * 256)  # 8 × 32 weights, the floor 0.2 · (1 − 0.9)


def test_bad_layer_floor_fails_in_init():
    from sparsify import ConfigError

    with pytest.raises(ConfigError, match="layer_floor=1.5 is invalid"):
        PruneAtEnd(0.9, layer_floor=1.5)
