"""The N:M pattern parsed once: ``check_pattern`` gives an ``NMPattern`` (or ``None`` for
unstructured) that every mask function takes as well as the string, with the same masks."""

import pytest
import torch
from torch import nn

from sparsify import ConfigError
from sparsify.dst import rigl_masks
from sparsify.masks import (
    NMPattern,
    check_pattern,
    magnitude_prune,
    pattern_key,
    pattern_keywords,
    select_mask,
)
from sparsify.pai import pai_masks


class CountingPattern(str):
    """A pattern string that counts how often it is split, i.e. parsed."""

    splits = 0

    def split(self, *args, **kwargs):
        CountingPattern.splits += 1
        return super().split(*args, **kwargs)


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 8))


def test_the_parse_gives_a_typed_pattern_and_takes_it_back_unchanged():
    parsed = check_pattern("2:4")
    assert parsed == NMPattern(2, 4) and (parsed.n, parsed.m) == (2, 4)
    assert str(parsed) == "2:4" and parsed.sparsity == 0.5
    assert check_pattern(parsed) is parsed
    assert check_pattern("unstructured") is None and check_pattern(None) is None
    for bad in (NMPattern(5, 4), NMPattern(0, 4), NMPattern(2.0, 4), 24):
        with pytest.raises(ConfigError, match=r"pattern=.* is invalid: use 'unstructured' or"):
            check_pattern(bad)


def test_typed_and_string_patterns_give_the_same_masks():
    theta = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    grads = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    by_string = select_mask({"l": theta.abs()}, {"l": theta}, 0.6, pattern="2:4")
    by_type = select_mask({"l": theta.abs()}, {"l": theta}, 0.6, pattern=NMPattern(2, 4))
    assert torch.equal(by_string["l"], by_type["l"])
    assert torch.equal(
        rigl_masks({"l": theta}, {"l": grads}, by_string, 0.6, pattern="2:4")["l"],
        rigl_masks({"l": theta}, {"l": grads}, by_string, 0.6, pattern=NMPattern(2, 4))["l"],
    )
    first = magnitude_prune(net(), 0.8, pattern="1:4")
    second = magnitude_prune(net(), 0.8, pattern=NMPattern(1, 4))
    assert all(torch.equal(first[name], second[name]) for name in first)
    torch.manual_seed(3)
    first = pai_masks(net(), 0.5, "random", pattern="2:4")
    torch.manual_seed(3)
    second = pai_masks(net(), 0.5, "random", pattern=NMPattern(2, 4))
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert select_mask({"l": theta.abs()}, {"l": theta}, 0.5, pattern=None)["l"].sum() == 64


def test_the_string_is_parsed_once_on_the_way_down():
    CountingPattern.splits = 0
    structure = pattern_keywords(net(), CountingPattern("2:4"), None, None)
    assert structure["pattern"] == NMPattern(2, 4) and CountingPattern.splits == 1
    CountingPattern.splits = 0
    magnitude_prune(net(), 0.5, pattern=CountingPattern("2:4"))
    assert CountingPattern.splits == 1


def test_the_state_key_spells_the_pattern_as_configs_do():
    assert pattern_key("2:4") == pattern_key(NMPattern(2, 4)) == {"pattern": "2:4"}
    assert pattern_key("unstructured") == pattern_key(None) == {}
