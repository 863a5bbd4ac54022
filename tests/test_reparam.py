import math

import pytest
import torch
from torch import nn

import sparsify
from sparsify import ConfigError, collapse, pointwise_factors, reparametrize, rescale_
from sparsify.models import create_model


def small_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 4.0])
def test_init_splits_theta_with_inner_scale_beta(beta):
    net = small_net()
    thetas = {n: p.detach().clone() for n, p in net.named_parameters() if n.endswith("weight")}
    names = reparametrize(net, beta=beta)
    assert names == ["0.weight", "3.weight"]
    factors = list(pointwise_factors(net))
    assert [n for n, _, _ in factors] == names
    for (name, m, w), key in zip(factors, ["0.weight", "3.weight"]):
        assert name == key
        assert isinstance(m, nn.Parameter) and isinstance(w, nn.Parameter)
        torch.testing.assert_close(m * w, thetas[key], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(m**2 - w**2, torch.full_like(m, beta), atol=1e-5, rtol=0)
    if beta == 0:  # spred's balanced split
        torch.testing.assert_close(m.abs(), w.abs(), atol=1e-6, rtol=0)


def test_factors_replace_the_weight_among_the_parameters():
    net = small_net()
    reparametrize(net)
    names = {n for n, _ in net.named_parameters()}
    assert "0.parametrizations.weight.original0" in names
    assert "0.parametrizations.weight.original1" in names
    assert "0.weight" not in names and "0.bias" in names


def test_outputs_unchanged_by_reparametrize_rescale_and_collapse():
    net = create_model("resnet20").eval()
    x = torch.randn(4, 3, 32, 32)
    y = net(x)
    reparametrize(net, beta=1.0)
    torch.testing.assert_close(net(x), y, atol=1e-4, rtol=1e-4)
    rescale_(net, beta=3.0)
    for _, m, w in pointwise_factors(net):
        torch.testing.assert_close(m**2 - w**2, torch.full_like(m, 3.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(net(x), y, atol=1e-4, rtol=1e-4)
    collapse(net)
    torch.testing.assert_close(net(x), y, atol=1e-4, rtol=1e-4)
    plain = create_model("resnet20").eval()
    plain.load_state_dict(net.state_dict())  # strict: the original architecture, no sparsify
    torch.testing.assert_close(plain(x), y, atol=1e-4, rtol=1e-4)


def regression_steps(net, steps, lr, weight_decay=0.0):
    x, target = torch.randn(64, 10), torch.randn(64, 3)
    opt = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(net(x), target).backward()
        opt.step()


def inner_scale(net):
    ((_, m, w),) = pointwise_factors(net)
    return (m**2 - w**2).detach().clone()


def test_inner_scale_conserved_by_small_step_gradient_descent():
    net = nn.Linear(10, 3, bias=False)
    reparametrize(net, beta=1.0)
    theta0 = net.weight.detach().clone()
    regression_steps(net, steps=1500, lr=2e-3)
    assert (net.weight - theta0).abs().max() > 1e-2  # θ moved ...
    torch.testing.assert_close(inner_scale(net), torch.ones(3, 10), atol=2e-4, rtol=0)  # β did not


def test_weight_decay_shrinks_inner_scale_exponentially():
    lam, lr, steps = 0.5, 1e-2, 200
    net = nn.Linear(10, 3, bias=False)
    reparametrize(net, beta=1.0)
    regression_steps(net, steps=steps, lr=lr, weight_decay=lam)
    expected = math.exp(-2 * lam * lr * steps)
    torch.testing.assert_close(
        inner_scale(net), torch.full((3, 10), expected), atol=2e-3, rtol=1e-2
    )


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ],
)
@pytest.mark.parametrize("reparam", [True, False])
def test_masked_weights_stay_exactly_zero_through_training(make_opt, reparam):
    net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    if reparam:
        reparametrize(net)
    sparsify.magnitude_prune(net, 0.7)
    zero_before = {n: (layer.weight == 0) for n, layer in [("0", net[0]), ("2", net[2])]}
    opt = make_opt(net.parameters())
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    for n, layer in [("0", net[0]), ("2", net[2])]:
        assert torch.equal(layer.weight == 0, zero_before[n])
        assert (layer.weight[zero_before[n]] == 0).all()


def test_mask_given_to_reparametrize_zeroes_theta_and_is_a_buffer():
    net = small_net()
    mask = (torch.rand(5, 128) > 0.5).float()
    reparametrize(net, mask={"3": mask})
    assert torch.equal(net[3].weight == 0, mask == 0)
    assert "3.parametrizations.weight.0.mask" in net.state_dict()
    assert torch.equal(sparsify.layer_masks(net)["3"], mask)


def test_reparametrize_keeps_an_existing_mask():
    net = small_net()
    sparsify.magnitude_prune(net, 0.5)
    zeros = net[3].weight == 0
    reparametrize(net)
    assert torch.equal(net[3].weight == 0, zeros)
    assert len(list(pointwise_factors(net))) == 2


def test_include_and_exclude_select_layers():
    net = small_net()
    assert reparametrize(net, exclude=["3"]) == ["0.weight"]
    net = small_net()
    assert reparametrize(net, include=[nn.Linear]) == ["3.weight"]


def test_negative_beta_is_refused():
    with pytest.raises(ConfigError, match=r"beta=-1.*>= 0"):
        reparametrize(small_net(), beta=-1)
