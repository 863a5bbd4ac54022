"""N:M patterns in ``select_mask`` / ``magnitude_prune``: at most n kept in every group of m
consecutive weights along each layer's input dimension."""

import pytest
import torch
from torch import nn

from sparsify import ConfigError
from sparsify.masks import magnitude_prune, select_mask


def groups(mask: torch.Tensor, m: int, transposed: bool = False) -> torch.Tensor:
    rows = mask.t() if transposed else mask.flatten(1)
    return rows.reshape(rows.shape[0], -1, m)


@pytest.mark.parametrize("pattern,n,m", [("2:4", 2, 4), ("1:4", 1, 4), ("3:8", 3, 8)])
def test_every_group_keeps_at_most_n_linear_and_conv(pattern, n, m):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 4, 2), nn.Flatten(), nn.Linear(64, 8))  # conv: 4 · 2 · 2
    masks = magnitude_prune(net, 1 - n / m, pattern=pattern)
    for name, mask in masks.items():
        kept = groups(mask, m).sum(-1)
        assert kept.max() <= n, name
        assert (kept == n).all(), name  # N:M alone: exactly n of m (no θ is 0 at init)


def test_magnitude_order_within_each_group():
    torch.manual_seed(1)
    theta = torch.randn(6, 16)
    mask = select_mask({"l": theta.abs()}, {"l": theta}, 0.5, pattern="2:4")["l"]
    for row_mask, row in zip(groups(mask, 4).bool(), groups(theta.abs(), 4)):
        for kept, magnitude in zip(row_mask, row):
            assert magnitude[kept].min() >= magnitude[~kept].max()


def test_higher_sparsity_is_unstructured_within_allowed_and_lower_keeps_pattern():
    torch.manual_seed(2)
    theta = torch.randn(8, 16)
    allowed = select_mask({"l": theta.abs()}, {"l": theta}, 0.5, pattern="2:4")["l"]
    higher = select_mask({"l": theta.abs()}, {"l": theta}, 0.75, pattern="2:4")["l"]
    lower = select_mask({"l": theta.abs()}, {"l": theta}, 0.2, pattern="2:4")["l"]
    assert int(higher.sum()) == 32 and bool((higher <= allowed).all())
    assert torch.equal(lower, allowed)  # the pattern wins: 1 − n/m
    kept = theta.abs()[higher.bool()]
    assert kept.min() >= theta.abs()[(allowed - higher).bool()].max()


def test_exact_zeros_are_never_chosen():
    theta = torch.tensor([[3.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.5, 0.0]])
    mask = select_mask({"l": theta.abs()}, {"l": theta}, 0.5, pattern="2:4")["l"]
    assert mask.tolist() == [[1, 0, 0, 0, 1, 1, 0, 0]]


def test_regrow_fills_free_places_within_groups():
    theta = torch.tensor([[3.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.5, 0.0]])
    grow = torch.tensor([[0.0, 5.0, 1.0, 0.0, 9.0, 0.0, 0.0, 7.0]])
    mask = select_mask({"l": theta.abs()}, {"l": theta}, 0.5, regrow={"l": grow}, pattern="2:4")
    assert mask["l"].tolist() == [[1, 1, 0, 0, 1, 1, 0, 0]]


def test_transposed_conv1d_groups_along_dim_0():
    pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(3)
    net = nn.Sequential(Conv1D(12, 8), nn.ReLU(), Conv1D(4, 12))  # weights (in, out)
    masks = magnitude_prune(net, 0.5, pattern="2:4")
    for name, mask in masks.items():
        assert (groups(mask, 4, transposed=True).sum(-1) == 2).all(), name
    # the same weights grouped along dim 1 would not be 2:4 in general
    assert any((groups(mask, 4).sum(-1) != 2).any() for mask in masks.values())


@pytest.mark.parametrize(
    "pattern,message",
    [
        ("2-4", "pattern='2-4' is invalid"),
        ("5:4", "pattern='5:4' is invalid"),
        ("0:4", "pattern='0:4' is invalid"),
        ("structured", "pattern='structured' is invalid"),
        ("2:5", "input dimension 12 is not a multiple of m=5"),
    ],
)
def test_bad_pattern_is_one_clear_error(pattern, message):
    net = nn.Sequential(nn.Linear(12, 8))
    with pytest.raises(ConfigError, match=message):
        magnitude_prune(net, 0.5, pattern=pattern)
