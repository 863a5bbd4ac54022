import pytest
import torch
from torch import nn

from sparsify import ConfigError, magnitude_prune, reparametrize, sparsity_report
from sparsify.dst import rigl_masks
from sparsify.masks import select_mask


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
    magnitude_prune(model, 0.8, scope="global", layer_floor=0)
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


def lists(masks):
    return {name: mask.tolist() for name, mask in masks.items()}


def test_select_mask_never_chooses_an_exact_zero_and_keeps_a_sparser_mask():
    theta = {"a": torch.tensor([0.0, 3.0, 0.0, -1.0, 0.0, 0.5]), "b": torch.tensor([0.0, 2.0])}
    scores = {name: t.abs() for name, t in theta.items()}
    # The target keeps 4 of 8, but only 4 are non-zero: all of them, and nothing else.
    keep = lists(select_mask(scores, theta, 0.5))
    assert keep == {"a": [0, 1, 0, 1, 0, 1], "b": [0, 1]}
    # 6 of 8 asked: still the same 4; zeros tie at 0 and are never chosen by tie order.
    assert lists(select_mask(scores, theta, 0.25)) == keep
    # Per layer: "a" keeps 3 of its 3 non-zeros although 0.8 · 6 = 5 are asked.
    assert select_mask(scores, theta, 0.2, scope="layer")["a"].tolist() == [0, 1, 0, 1, 0, 1]
    # Enough non-zeros: the largest scores win, whatever θ's sign.
    assert lists(select_mask(scores, theta, 0.75)) == {"a": [0, 1, 0, 0, 0, 0], "b": [0, 1]}


def test_select_mask_regrows_only_by_the_stated_rule():
    theta = {"a": torch.tensor([0.0, 3.0, 0.0, -1.0, 0.0, 0.5])}
    scores = {"a": theta["a"].abs()}
    regrow = {"a": torch.tensor([0.1, 9.0, 0.7, 9.0, 0.3, 9.0])}
    keep = select_mask(scores, theta, 1 / 6, regrow=regrow)  # 5 kept: 3 non-zeros + 2 grown
    assert keep["a"].tolist() == [0, 1, 1, 1, 1, 1]
    keep = select_mask(scores, theta, densities={"a": 0.5}, regrow=regrow)
    assert keep["a"].tolist() == [0, 1, 0, 1, 0, 1]  # the budget is met without growing


def test_magnitude_prune_keeps_learned_zeros_and_reports_the_higher_sparsity():
    model = net()
    with torch.no_grad():
        model[0].weight[:, :15] = 0  # 750 of the 1500 weights are exactly 0
    nonzero = {name: layer.weight != 0 for name, layer in (("0", model[0]), ("2", model[2]))}
    masks = magnitude_prune(model, 0.3)
    for name, mask in masks.items():
        assert torch.equal(mask.bool(), nonzero[name])
    assert sparsity_report(model)["global"] == pytest.approx(0.5)


def test_rigl_drop_never_keeps_a_zero_weight_by_tie_order():
    # Four kept weights, two of them exactly 0; dropping 1 of 4 keeps 3, but only 2 are
    # non-zero: the zeros compete with the other zeros by gradient, the growth rule.
    weights = {"a": torch.tensor([0.0, 0.0, 2.0, -3.0, 0.0, 0.0])}
    current = {"a": torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])}
    grads = {"a": torch.tensor([0.1, 0.2, 0.0, 0.0, 5.0, 4.0])}
    assert rigl_masks(weights, grads, current, 0.25)["a"].tolist() == [0, 0, 1, 1, 1, 1]
    grads["a"][0] = 9.0  # a zero kept weight with a large gradient keeps its place
    assert rigl_masks(weights, grads, current, 0.25)["a"].tolist() == [1, 0, 1, 1, 1, 0]


@pytest.mark.parametrize("reparam", [False, True])
def test_a_diverged_weight_is_an_error_naming_its_layer_not_a_mask(reparam):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    if reparam:
        reparametrize(model, beta=1.0)
    with torch.no_grad():  # a NaN in θ, whichever way it is held (w, or m and w)
        for name, parameter in model[2].named_parameters():
            if "bias" not in name:
                parameter.view(-1)[3] = float("nan")
    before = model[0].weight.detach().clone()
    with pytest.raises(ConfigError, match=r"2's weights are not finite .* training diverged"):
        magnitude_prune(model, 0.5)
    assert torch.equal(model[0].weight, before)  # nothing was masked


@pytest.mark.parametrize("kept", [1, 400_000, 839_999, 900_000])
def test_select_mask_keeps_exactly_the_budget_by_threshold_on_a_large_tied_layer(kept):
    """Above 2^20 entries the threshold is bracketed from a sample first (``_kth_highest``);
    the count stays exact, no exact zero is kept, and ties at the threshold go by position."""
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(1_200_000, generator=generator).mul(1000).round()  # many ties
    theta = torch.ones(1_200_000)
    theta[torch.randperm(1_200_000, generator=generator)[:360_000]] = 0
    density = {"w": kept / 1_200_000}
    mask = select_mask({"w": scores}, {"w": theta}, densities=density)["w"].bool()
    assert int(mask.sum()) == min(kept, 840_000)
    assert (theta[mask] != 0).all()
    live = theta != 0
    if 0 < kept < 840_000:
        threshold = scores[mask].min()
        assert (scores[live & ~mask] <= threshold).all()
        tied = (live & (scores == threshold)).nonzero().squeeze(1)
        chosen = mask[tied]
        assert chosen[: int(chosen.sum())].all()  # the lowest indices among the ties
