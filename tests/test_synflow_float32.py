"""SynFlow in float32 on the rescaled trace (``sparsify.homogeneous``) against the float64
computation it replaces: scores proportional, masks equal, float64 where float32 cannot do;
``synflow_precision`` choosing which rounds run in float64."""

import copy

import pytest
import torch
from torch import nn

import sparsify.pai as pai
from sparsify.callbacks import PruneAtInit
from sparsify.errors import ConfigError
from sparsify.homogeneous import homogeneous_scorer
from sparsify.models import create_model
from sparsify.pai import _linearize, pai_masks, scoring_copy, synflow_scores
from sparsify.reparam import prunable_layers


class Block(nn.Module):
    def __init__(self, width: int, depth: int = 2) -> None:
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=True), nn.BatchNorm2d(width)]
            layers.append(nn.ReLU())
        self.branch = nn.Sequential(*layers[:-1])

    def forward(self, x):
        return torch.relu(self.branch(x) + x)


def deep_residual_net(blocks: int = 12, depth: int = 2) -> nn.Module:
    """Residual blocks whose all-ones signal grows ~3000× per block: R ≈ 1e42 > float32's max.
    Biases and BatchNorm shifts are non-zero, so the rescaling must divide them too."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        *[Block(8, depth) for _ in range(blocks)],
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(layer.weight)
                nn.init.uniform_(layer.bias, 0.0, 1.0)
            if isinstance(layer, nn.BatchNorm2d):
                nn.init.uniform_(layer.weight, 0.5, 1.5)
                nn.init.uniform_(layer.bias, 0.0, 1.0)
    return net


def float32_scores(net: nn.Module, shape) -> dict:
    scorer, weights = scoring_copy(net, dtype=torch.float32)
    _linearize(scorer)
    traced = homogeneous_scorer(scorer)
    assert traced is not None
    r = traced(torch.ones(1, *shape)).sum()
    grads = torch.autograd.grad(r, list(weights.values()))
    return {name: (theta * g).detach() for (name, theta), g in zip(weights.items(), grads)}


def assert_proportional(ours: dict, reference: dict, rtol: float) -> None:
    a = torch.cat([s.flatten().double() for s in ours.values()])
    b = torch.cat([s.flatten() for s in reference.values()])
    factor = b.sum() / a.sum()
    assert torch.allclose(a * factor, b, rtol=rtol, atol=0), float(
        ((a * factor - b) / b).abs().max()
    )


def float64_synflow(net: nn.Module, sparsity: float, rounds: int, shape) -> dict:
    return float64_synflow_rounds(net, sparsity, rounds, shape)[-1]


def float64_synflow_rounds(net: nn.Module, sparsity: float, rounds: int, shape) -> list:
    """SynFlow in float64 as before the float32 path, the masks after every round: each round
    scores the masked |θ| with ``synflow_scores`` and keeps the global top
    round((1 − sparsity)^(k/rounds) · n) among the weights still in, by ``torch.topk``."""
    net = copy.deepcopy(net)
    weights = {name: layer.weight for name, layer in prunable_layers(net)}
    originals = {name: w.detach().clone() for name, w in weights.items()}
    masks = {name: w != 0 for name, w in originals.items()}
    total = sum(w.numel() for w in originals.values())
    every_round = []
    for k in range(1, rounds + 1):
        with torch.no_grad():
            for name, w in weights.items():
                w.copy_(originals[name] * masks[name])
        scores = synflow_scores(net, shape)
        flat = torch.cat(
            [s.masked_fill(~masks[n], -torch.inf).flatten() for n, s in scores.items()]
        )
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[torch.topk(flat, round((1 - sparsity) ** (k / rounds) * total)).indices] = True
        sizes = [s.numel() for s in scores.values()]
        masks = {n: m.view_as(originals[n]) for n, m in zip(scores, keep.split(sizes))}
        every_round.append(masks)
    return every_round


def overlap(ours: dict, reference: dict) -> float:
    shared = sum(int((ours[n].bool() & reference[n]).sum()) for n in reference)
    return shared / sum(int(reference[n].sum()) for n in reference)


def test_rescaled_float32_scores_are_proportional_to_float64_where_float32_overflows():
    torch.manual_seed(0)
    net = deep_residual_net()
    scorer, _ = scoring_copy(net, dtype=torch.float32)
    _linearize(scorer)
    assert not torch.isfinite(scorer(torch.ones(1, 3, 6, 6)).sum())  # plain float32 overflows
    reference = synflow_scores(net, (3, 6, 6))
    assert float(sum(s.sum() for s in reference.values())) > 1e38 * len(reference)
    assert_proportional(float32_scores(net, (3, 6, 6)), reference, rtol=1e-4)


def test_cifar_resnet_traces_with_its_padded_shortcut_and_scores_like_float64():
    torch.manual_seed(1)
    net = create_model("resnet20")
    assert_proportional(float32_scores(net, (3, 8, 8)), synflow_scores(net, (3, 8, 8)), 1e-4)


def test_float32_synflow_masks_equal_the_float64_computation():
    torch.manual_seed(2)
    net = deep_residual_net()
    ours = pai_masks(
        net, 0.9, "synflow", rounds=4, input_shape=(3, 6, 6), synflow_precision="float32"
    )
    reference = float64_synflow(net, 0.9, 4, (3, 6, 6))
    total = sum(m.numel() for m in reference.values())
    assert sum(int(m.sum()) for m in ours.values()) == round(0.1 * total)
    assert overlap(ours, reference) >= 0.99


class Affine(nn.Module):
    def forward(self, x):
        return 2 * x + 1  # not positively homogeneous: f(x / c) ≠ f(x) / c


def test_a_network_with_other_operations_is_scored_in_float64():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), Affine(), nn.Linear(8, 3))
    scorer, _ = scoring_copy(net, dtype=torch.float32)
    assert homogeneous_scorer(scorer) is None
    ours = pai_masks(net, 0.7, "synflow", rounds=3, input_shape=(6,))
    reference = float64_synflow(net, 0.7, 3, (6,))
    for name, mask in reference.items():
        assert torch.equal(ours[name].bool(), mask), name


def test_synflow_falls_back_to_float64_where_one_block_overflows_float32():
    """24 convolutions inside one residual branch: no cut point between them, so the
    rescaled float32 trace still overflows; the rounds run in float64 and match it exactly."""
    torch.manual_seed(4)
    net = deep_residual_net(blocks=1, depth=24)
    scorer, _ = scoring_copy(net, dtype=torch.float32)
    _linearize(scorer)
    assert not torch.isfinite(homogeneous_scorer(scorer)(torch.ones(1, 3, 6, 6)).sum())
    ours = pai_masks(net, 0.8, "synflow", rounds=3, input_shape=(3, 6, 6))
    reference = float64_synflow(net, 0.8, 3, (3, 6, 6))
    for name, mask in reference.items():
        assert torch.equal(ours[name].bool(), mask), name


def record_rounds(monkeypatch) -> list:
    """(dtype of the scores, mask chosen) of every SynFlow round ``pai`` runs from now on."""
    rounds = []

    def recording(scores, *args, **kwargs):
        chosen = select_mask(scores, *args, **kwargs)
        rounds.append((next(iter(scores.values())).dtype, chosen))
        return chosen

    select_mask = pai.select_mask
    monkeypatch.setattr(pai, "select_mask", recording)
    return rounds


@pytest.fixture(scope="module")
def five_rounds():
    """A small residual net and the float64 computation's masks after each of 5 rounds."""
    torch.manual_seed(5)
    net = deep_residual_net(blocks=4)
    return net, float64_synflow_rounds(net, 0.9, 5, (3, 6, 6))


@pytest.mark.parametrize(
    "precision, float64_rounds", [("mixed", 3), ("float64", 5), ("float32", 0)]
)
def test_synflow_precision_scores_the_first_rounds_in_float64_exactly(
    monkeypatch, five_rounds, precision, float64_rounds
):
    """``mixed``: the first half of the rounds (rounded up) are the float64 computation itself,
    mask for mask, on a network the float32 trace could score; the rest run in float32 and
    still end within 1 % of it. ``float64``: every round."""
    net, reference = five_rounds
    rounds = record_rounds(monkeypatch)
    ours = pai_masks(
        net, 0.9, "synflow", rounds=5, input_shape=(3, 6, 6), synflow_precision=precision
    )
    dtypes = [dtype for dtype, _ in rounds]
    assert dtypes == [torch.float64] * float64_rounds + [torch.float32] * (5 - float64_rounds)
    for (_, chosen), expected in zip(rounds[:float64_rounds], reference):
        for name, mask in expected.items():
            assert torch.equal(chosen[name], mask), name
    assert overlap(ours, reference[-1]) >= 0.99


def test_an_unknown_synflow_precision_is_one_clear_error():
    net = nn.Sequential(nn.Linear(4, 3))
    message = r"synflow_precision='half' is invalid: choose one of mixed, float64, float32"
    with pytest.raises(ConfigError, match=message):
        pai_masks(net, 0.5, "synflow", input_shape=(4,), synflow_precision="half")
    with pytest.raises(ConfigError, match=message):
        PruneAtInit(score="synflow", synflow_precision="half")
