"""Sparsified modules pickle as the plain network, and their portable state dict loads into
both the plain and the sparsified module (sparsify.portable)."""

import pickle

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsify import magnitude_prune, reparametrize
from sparsify.portable import portable_state_dict, restore_state_dict
from sparsify.soft_masks import soft_threshold


def net():
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def sparse_net():
    model = net()
    reparametrize(model, include=["0"])
    magnitude_prune(model, 0.6)
    return model


def test_a_sparsified_module_pickles_as_the_plain_network():
    model = sparse_net()
    x = torch.randn(4, 6)
    data = pickle.dumps(model)
    assert b"sparsify" not in data  # unpickling needs no sparsify
    plain = pickle.loads(data)
    assert type(plain[0]) is nn.Linear and not parametrize.is_parametrized(plain[0])
    assert list(plain[0]._parameters) == ["weight", "bias"]
    assert torch.equal(plain(x), model(x))
    assert parametrize.is_parametrized(model[0])  # the original is untouched


def test_portable_state_dict_loads_plain_and_back_bit_exactly():
    model = sparse_net()
    portable = portable_state_dict(model, model.state_dict())
    assert set(portable) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    plain = net()
    plain.load_state_dict(portable)  # strict
    assert torch.equal(plain[0].weight, model[0].weight)
    assert float((plain[0].weight == 0).float().mean()) > 0.3
    again = net()
    reparametrize(again, include=["0"])
    magnitude_prune(again, 0.0)  # the same structure: masks on both layers
    again.load_state_dict(portable)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    restored = restore_state_dict(portable)
    assert list(restored) == list(model.state_dict())
    assert portable_state_dict(model, portable).keys() == portable.keys()  # idempotent


def test_soft_masks_and_foreign_parametrizations():
    """STR's threshold rides along; a parametrization of the user's own is left as it is."""

    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

    def build():
        model = net()
        soft_threshold(model, include=["0"])
        parametrize.register_parametrization(model[2], "weight", Double())
        return model

    model = build()
    portable = portable_state_dict(model, model.state_dict())
    assert "0.weight" in portable and "2.parametrizations.weight.original" in portable
    copy = build()
    copy.load_state_dict(portable)
    for key, value in model.state_dict().items():
        assert torch.equal(copy.state_dict()[key], value), key
