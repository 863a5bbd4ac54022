"""ERK layer densities, SNIP and SynFlow against the reference algorithms, re-derived here.

- ERK: google-research/rigl, ``rigl/sparse_utils.py`` (``get_sparsities_erdos_renyi``).
- SNIP and SynFlow: ganguli-lab/Synaptic-Flow, ``Pruners/pruners.py`` (``SNIP.score``,
  ``SynFlow.score``, ``Pruner._global_mask``) and ``prune.py`` (``prune_loop``: the model in
  eval mode unless ``train_mode`` is asked for).

Each reference is written below in our own words on a small model, and compared with
``sparsify.masks.layer_densities`` and ``sparsify.pai.pai_masks``.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sparsify.masks import layer_densities
from sparsify.pai import pai_masks


def erk_reference(shapes: dict[str, tuple], sparsity: float) -> dict[str, float]:
    """RiGL's Erdős–Rényi–Kernel densities (no custom per-layer sparsities, power scale 1).

    Every layer has raw probability (sum of its shape's dims) / (product of its dims). Each
    layer would keep n − floor(sparsity · n) weights under a uniform sparsity; ε is chosen so
    that Σ ε · raw · n over the scaled layers equals those kept weights minus the zeros the
    dense layers would have had. While ε · max(raw) > 1, the layers with the largest raw
    probability become dense (one value of raw at a time) and ε is solved again.
    """
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        kept = lambda n: n - math.floor(sparsity * n)  # noqa: E731
        rhs = sum(kept(sizes[n]) for n in shapes if n not in dense)
        rhs -= sum(math.floor(sparsity * sizes[n]) for n in dense)
        scaled = [n for n in shapes if n not in dense]
        epsilon = rhs / sum(raw[n] * sizes[n] for n in scaled)
        largest = max(raw[n] for n in scaled)
        if epsilon * largest <= 1:
            return {n: 1.0 if n in dense else epsilon * raw[n] for n in shapes}
        dense |= {n for n in scaled if raw[n] == largest}


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 216 weights: raw 17/216, the largest
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),  # 1152
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(256, 64),  # 16384
        nn.ReLU(),
        nn.Linear(64, 10),  # 640: raw 74/640
    )


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.98])
def test_erk_densities_match_rigl(sparsity):
    model = small_cnn()
    shapes = {
        name: tuple(layer.weight.shape)
        for name, layer in model.named_children()
        if isinstance(layer, (nn.Conv2d, nn.Linear))
    }
    ours = layer_densities(model, sparsity, "erk")
    reference = erk_reference(shapes, sparsity)
    assert {n for n, d in ours.items() if d == 1.0} == {n for n, d in reference.items() if d == 1}
    if sparsity == 0.5:
        assert reference["0"] == reference["8"] == 1.0  # layers that had to be made dense
    # The budgets differ only by rounding: floor per layer there, round overall here.
    total = sum(math.prod(s) for s in shapes.values())
    for name in shapes:
        assert ours[name] == pytest.approx(reference[name], abs=len(shapes) / total * 4)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(10, 24), nn.ReLU(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 4)
    )


def batches(n=3):
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 10, generator=g), torch.randint(0, 4, (16,), generator=g))
        for _ in range(n)
    ]


LINEAR = ("0", "2", "4")


def reference_global_mask(scores: dict, density: float) -> dict:
    """Synaptic-Flow's global threshold: the k = int((1 − density) · N) smallest scores (and any
    equal to the k-th) are pruned."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = int((1.0 - density) * flat.numel())
    threshold = torch.kthvalue(flat, k).values
    return {name: (s > threshold).float() for name, s in scores.items()}


def snip_reference(model: nn.Sequential, data: list, density: float) -> dict:
    """SNIP as Synaptic-Flow scores it: a multiplicative mask c = 1 on every weight, the loss of
    each batch back-propagated and the gradients in c summed, score |∂L/∂c| = |g ⊙ θ|,
    normalized by the sum of all scores; then the global threshold."""
    gates = {n: torch.ones_like(model.get_submodule(n).weight, requires_grad=True) for n in LINEAR}

    def forward(x):
        for index, layer in enumerate(model):
            name = str(index)
            if name in gates:
                x = F.linear(x, layer.weight.detach() * gates[name], layer.bias.detach())
            else:
                x = layer(x)
        return x

    for x, y in data:
        F.cross_entropy(forward(x), y).backward()
    scores = {n: c.grad.abs() for n, c in gates.items()}
    norm = sum(s.sum() for s in scores.values())
    return reference_global_mask({n: s / norm for n, s in scores.items()}, density)


def synflow_reference(model: nn.Sequential, density: float, rounds: int) -> dict:
    """SynFlow as Synaptic-Flow runs it: every parameter replaced by its absolute value, an
    all-ones input, R = sum(output), score |θ ⊙ ∂R/∂θ| on the masked weights, and ``rounds``
    global prunings to densities density^(k / rounds); pruned weights stay 0 (score 0)."""
    weights = {n: model.get_submodule(n).weight.detach().abs() for n in LINEAR}
    biases = {n: model.get_submodule(n).bias.detach().abs() for n in LINEAR}
    masks = {n: torch.ones_like(w) for n, w in weights.items()}
    for k in range(1, rounds + 1):
        params = {n: w.clone().requires_grad_() for n, w in weights.items()}
        x = torch.ones(1, 10)
        for index, name in enumerate(LINEAR):
            x = F.linear(x, params[name] * masks[name], biases[name])
            if index < len(LINEAR) - 1:
                x = F.relu(x)
        x.sum().backward()
        scores = {n: (p.grad * p).detach().abs() for n, p in params.items()}
        masks = reference_global_mask(scores, density ** (k / rounds))
    return masks


def test_snip_masks_match_synaptic_flow():
    model, data = mlp(), batches()
    density = 0.25  # (1 − 0.25) · 688 weights is a whole number: both keep 172
    ours = pai_masks(
        model, 1 - density, "snip", distribution="global", dataloader=data, num_batches=len(data)
    )
    reference = snip_reference(model, data, density)
    for name in LINEAR:
        assert torch.equal(ours[name].float(), reference[name]), name
    assert sum(int(m.sum()) for m in ours.values()) == 172


def test_synflow_masks_match_synaptic_flow():
    model = mlp()
    density, rounds = 0.25, 10
    ours = pai_masks(
        model, 1 - density, "synflow", distribution="global", rounds=rounds, input_shape=(10,)
    )
    reference = synflow_reference(model, density, rounds)
    kept = [int(m.sum()) for m in reference.values()]
    assert all(count > 0 for count in kept)  # no layer cut off at this density
    for name in LINEAR:
        assert torch.equal(ours[name].float(), reference[name]), name


def bn_cnn() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),  # 216 weights
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),  # 1152
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10),  # 640
    )


CONV_LINEAR = ("0", "3", "8")


def image_batches(n=3):
    g = torch.Generator().manual_seed(4)
    return [
        (torch.randn(16, 3, 8, 8, generator=g) * 2 + 1, torch.randint(0, 10, (16,), generator=g))
        for _ in range(n)
    ]


def snip_reference_prune_loop(model: nn.Module, data: list, density: float, train_mode: bool):
    """Synaptic-Flow's single-shot SNIP: ``prune_loop`` puts the model in train mode, then in
    eval mode unless ``train_mode``; ``SNIP.score`` multiplies every prunable weight by a gate
    c = 1, back-propagates each batch's loss and sums the gradients in c, score |∂L/∂c| =
    |g ⊙ θ| normalized by the sum of all scores; then the global threshold. In eval mode
    BatchNorm normalizes with the running statistics (0 and 1 at initialization); in train mode
    with the batch's (and updates the running statistics, so this runs on a copy)."""
    model = copy.deepcopy(model).train(train_mode)
    gates = {
        n: torch.ones_like(model.get_submodule(n).weight, requires_grad=True) for n in CONV_LINEAR
    }
    for x, y in data:
        weights = {
            f"{n}.weight": model.get_submodule(n).weight.detach() * c for n, c in gates.items()
        }
        F.cross_entropy(functional_call(model, weights, (x,)), y).backward()
    scores = {n: c.grad.abs() for n, c in gates.items()}
    norm = sum(s.sum() for s in scores.values())
    return reference_global_mask({n: s / norm for n, s in scores.items()}, density)


def test_snip_masks_match_synaptic_flow_on_a_cnn_with_batchnorm():
    """By default SNIP scores in eval mode, as Synaptic-Flow's prune loop does;
    ``score_mode="train"`` is its ``train_mode``. On this network the two modes give different
    masks, so the test sees which one is used."""
    model, data = bn_cnn(), image_batches()
    density = 0.25  # (1 − 0.25) · 2008 weights is a whole number: both keep 502
    reference_eval = snip_reference_prune_loop(model, data, density, train_mode=False)
    reference_train = snip_reference_prune_loop(model, data, density, train_mode=True)
    options = dict(distribution="global", dataloader=data, num_batches=len(data))
    ours_default = pai_masks(model, 1 - density, "snip", **options)
    ours_eval = pai_masks(model, 1 - density, "snip", score_mode="eval", **options)
    ours_train = pai_masks(model, 1 - density, "snip", score_mode="train", **options)
    for name in CONV_LINEAR:
        assert torch.equal(ours_default[name].float(), reference_eval[name]), name
        assert torch.equal(ours_eval[name].float(), reference_eval[name]), name
        assert torch.equal(ours_train[name].float(), reference_train[name]), name
    assert sum(int(m.sum()) for m in ours_default.values()) == 502
    shared = sum(int((reference_eval[n] * reference_train[n]).sum()) for n in CONV_LINEAR)
    assert shared < 0.9 * 502  # the modes differ on this network
    assert model.training  # the model's own mode is left as it was
