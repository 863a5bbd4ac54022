import pytest
import torch
from torch import nn

from sparsify import ConfigError, magnitude_prune, reparametrize, sparsity_report


def net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 10))


def test_sparsity_report_counts_zero_effective_weights():
    model = net()
    with torch.no_grad():
        model[0].weight[:10] = 0  # 200 of 1000
    report = sparsity_report(model)
    assert report["layers"] == {"0": 0.2, "2": 0.0}
    assert report["global"] == pytest.approx(200 / 1500)


@pytest.mark.parametrize("reparam", [False, True])
def test_global_magnitude_prune_keeps_the_largest_effective_weights(reparam):
    model = net()
    if reparam:
        reparametrize(model)
    thetas = torch.cat([model[0].weight.detach().flatten(), model[2].weight.detach().flatten()])
    threshold = thetas.abs().sort().values[round(0.8 * 1500) - 1]
    magnitude_prune(model, 0.8, scope="global")
    assert sparsity_report(model)["global"] == pytest.approx(0.8)
    for layer in (model[0], model[2]):
        kept = layer.weight != 0
        assert (layer.weight[kept].abs() > threshold).all()


def test_layer_scope_prunes_each_layer_to_the_target():
    model = net()
    magnitude_prune(model, 0.9, scope="layer")
    assert sparsity_report(model)["layers"] == {"0": 0.9, "2": 0.9}


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_impossible_sparsity_is_refused(bad):
    with pytest.raises(ConfigError, match=rf"sparsity={bad}.*\[0, 1\)"):
        magnitude_prune(net(), bad)


def test_unknown_scope_is_refused():
    with pytest.raises(ConfigError, match="scope='row'.*global, layer"):
        magnitude_prune(net(), 0.5, scope="row")
