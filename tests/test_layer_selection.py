"""``LayerSelection``: ``include``/``exclude`` resolved once, then layers looked up by name."""

import torch
from torch import nn

from sparsify import rules
from sparsify.masks import set_masks
from sparsify.reparam import LayerSelection, layer_masks, match_structure, prunable_layers


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.Linear(4, 3))


def test_a_selection_yields_the_layers_the_patterns_chose():
    model = net()
    selection = LayerSelection.of(model, include=[nn.Linear], exclude=["3"])
    assert selection.names == ("0", "2")
    assert list(prunable_layers(model, selection)) == [("0", model[0]), ("2", model[2])]
    assert [name for name, _ in prunable_layers(model, selection, exclude=["0"])] == ["2"]


def test_a_rule_keeps_the_layers_it_resolved_on_its_model():
    rule = rules.MagnitudePruning(0.5, include=[nn.Linear])
    model = net()
    resolved = rule.layers(model)
    model.add_module("late", nn.Linear(3, 3))  # matches include, but came after the rule chose
    assert rule.layers(model) is resolved
    rule.prepare(model)
    assert set(layer_masks(model)) == {"0", "2", "3"}

    other = net()
    other.add_module("late", nn.Linear(3, 3))
    assert rule.layers(other).names == ("0", "2", "3", "late")


class Blocks(nn.Module):
    """Layer names with fnmatch's special characters, which a pattern cannot name exactly."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleDict({"conv[1]": nn.Linear(4, 4), "conv1": nn.Linear(4, 4)})


def test_masks_by_name_reach_layers_whose_names_look_like_patterns():
    model = Blocks()
    set_masks(model, {"blocks.conv[1]": torch.zeros(4, 4)})
    assert set(layer_masks(model)) == {"blocks.conv[1]"}
    assert torch.count_nonzero(model.blocks["conv[1]"].weight) == 0

    fresh = Blocks()
    match_structure(fresh, model.state_dict())
    fresh.load_state_dict(model.state_dict())
    assert set(layer_masks(fresh)) == {"blocks.conv[1]"}
