"""N:M patterns in ``select_mask`` / ``magnitude_prune``: at most n kept in every group of m
consecutive weights along each layer's input dimension; for a conv weight, m consecutive input
channels at each (out, kh, kw), as NVIDIA's ASP groups them."""

import itertools

import lightning as L
import pytest
import torch
from torch import nn

from helpers import UserModule, loaders, trainer
from sparsify import ConfigError
from sparsify.callbacks.magnitude_pruning import MagnitudePruning
from sparsify.callbacks.prune_at_end import PruneAtEnd
from sparsify.callbacks.prune_at_init import PruneAtInit
from sparsify.callbacks.rigl import RiGL
from sparsify.dst import rigl_masks
from sparsify.masks import magnitude_prune, select_mask
from sparsify.pai import pai_masks
from sparsify.reparam import is_transposed, layer_masks


def groups(mask: torch.Tensor, m: int, transposed: bool = False) -> torch.Tensor:
    """(…, m) groups of m consecutive input channels: along dim 1 of an (out, in) weight, at
    each (out, kh, kw) of an (out, in, kh, kw) conv weight, along dim 0 of an (in, out) one."""
    if transposed:
        return mask.t().reshape(mask.shape[1], -1, m)
    if mask.dim() == 4:
        return mask.permute(0, 2, 3, 1).reshape(*mask.shape[:1], *mask.shape[2:], -1, m)
    return mask.reshape(mask.shape[0], -1, m)


@pytest.mark.parametrize("pattern,n,m", [("2:4", 2, 4), ("1:4", 1, 4), ("3:8", 3, 8)])
def test_every_group_keeps_at_most_n_linear_and_conv(pattern, n, m):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(64, 8))  # conv: in 8, 3 × 3
    masks = magnitude_prune(net, 1 - n / m, pattern=pattern)
    for name, mask in masks.items():
        kept = groups(mask, m).sum(-1)
        assert kept.max() <= n, name
        assert (kept == n).all(), name  # N:M alone: exactly n of m (no θ is 0 at init)


def asp_reference_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """NVIDIA's ASP (NVIDIA/apex, ``apex/contrib/sparsity/sparse_masklib.py``: ``create_mask``
    and ``mn_1d_best``), in our words: a conv weight (K, C, R, S) is laid out as a
    (R · S · K, C) matrix (a Conv1d weight (K, C, R) as (K · R, C), a linear weight as it is);
    each row is cut into groups of m consecutive entries, i.e. m consecutive input channels;
    each group keeps the pattern of n ones out of m that has the largest sum of |w| kept; the
    mask is laid back into the weight's shape. AC/DC's N:M pruner (IST-DASLab/ACDC,
    ``policies/pruners.py``, ``MagnitudeNMPruner``) groups a conv weight the same way (permuted
    to (K, R, S, C)) and keeps the n largest |w| of each group, the same choice."""
    shape = weight.shape
    if weight.dim() == 4:
        rows = weight.permute(2, 3, 0, 1).reshape(-1, shape[1])
    elif weight.dim() == 3:
        rows = weight.permute(0, 2, 1).reshape(-1, shape[1])
    else:
        rows = weight
    patterns = torch.tensor(
        [
            [1.0 if i in kept else 0.0 for i in range(m)]
            for kept in itertools.combinations(range(m), n)
        ]
    )
    vectors = rows.abs().reshape(-1, m)
    mask = patterns[(vectors @ patterns.t()).argmax(1)].reshape(rows.shape)
    if weight.dim() == 4:
        return mask.reshape(shape[2], shape[3], shape[0], shape[1]).permute(2, 3, 0, 1)
    if weight.dim() == 3:
        return mask.reshape(shape[0], shape[2], shape[1]).permute(0, 2, 1)
    return mask


@pytest.mark.parametrize("pattern,n,m", [("2:4", 2, 4), ("1:4", 1, 4), ("3:8", 3, 8)])
def test_masks_match_nvidia_asp_on_conv_and_linear_layers(pattern, n, m):
    torch.manual_seed(7)
    net = nn.Sequential(
        nn.Conv2d(16, 8, 3),
        nn.Conv1d(8, 8, 3),  # weights only: the network is never run
        nn.Linear(32, 8),
    )
    weights = {name: layer.weight.detach().clone() for name, layer in net.named_children()}
    masks = magnitude_prune(net, 1 - n / m, pattern=pattern)
    for name, weight in weights.items():
        assert torch.equal(masks[name], asp_reference_mask(weight, n, m)), name
    # Grouped along the flattened in · kh · kw axis instead (a (out, in · kh · kw) matrix),
    # some groups of input channels would keep more than n.
    conv = weights["0"].flatten(1)
    flattened = select_mask({"c": conv.abs()}, {"c": conv}, 0.0, pattern=pattern)["c"]
    assert (groups(flattened.view_as(weights["0"]), m).sum(-1) > n).any()


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


def test_rigl_masks_stay_n_m_and_keep_counts():
    torch.manual_seed(4)
    theta = torch.randn(4, 16)
    current = select_mask({"l": theta.abs()}, {"l": theta}, 0.5, pattern="2:4")
    grads = {"l": torch.randn(4, 16)}
    new = rigl_masks({"l": theta}, grads, current, 0.5, pattern="2:4")["l"]
    assert int(new.sum()) == int(current["l"].sum())
    assert (groups(new, 4).sum(-1) == 2).all()
    assert not torch.equal(new, current["l"])  # it did drop and grow


class RecordMasks(L.Callback):
    """Every prunable layer's mask after each training step."""

    def __init__(self):
        self.masks = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.masks.append({k: v.detach().clone() for k, v in layer_masks(pl_module).items()})


def assert_two_four(masks: dict, sparsity: float = 0.5):
    for name, mask in masks.items():
        assert groups(mask, 4).sum(-1).max() <= 2, name
    kept = sum(int(mask.sum()) for mask in masks.values())
    assert kept == round((1 - sparsity) * sum(mask.numel() for mask in masks.values()))


@pytest.mark.parametrize(
    "make",
    [
        lambda: MagnitudePruning(0.75, start=0, end=0.5, frequency=0.25, pattern="2:4"),
        lambda: PruneAtEnd(0.75, pattern="2:4"),
        lambda: PruneAtInit(0.75, score="magnitude", pattern="2:4"),
        lambda: RiGL(0.75, distribution="uniform", every_n_steps=2, end=1.0, pattern="2:4"),
    ],
    ids=["gmp", "prune_at_end", "pai", "rigl"],
)
def test_callbacks_train_valid_two_four_masks(tmp_path, make):
    """Each method ends (and, for RiGL, stays at every step) with at most 2 of every 4 weights
    along the input dimension, at the requested 75 % (a further choice within the pattern)."""
    L.seed_everything(0)
    record = RecordMasks()
    callback = make()
    module = UserModule()
    trainer(tmp_path, [callback, record], max_epochs=2).fit(module, *loaders())
    assert_two_four(layer_masks(module), 0.75)
    if isinstance(callback, RiGL):
        for masks in record.masks:
            assert_two_four(masks, 0.75)
        changed = [not torch.equal(m["net.0"], record.masks[0]["net.0"]) for m in record.masks]
        assert any(changed)


def test_prune_at_end_below_pattern_sparsity_achieves_pattern(tmp_path):
    """sparsity 0.3 with 2:4: the pattern wins, 50 % are masked."""
    module = UserModule()
    callback = PruneAtEnd(0.3, pattern="2:4")
    trainer(tmp_path, [callback], max_epochs=1).fit(module, *loaders())
    assert_two_four(layer_masks(module), 0.5)
    assert callback.achieved == pytest.approx(0.5)


@pytest.mark.parametrize(
    "make", [MagnitudePruning, PruneAtEnd, PruneAtInit, RiGL], ids=lambda c: c.__name__
)
def test_callbacks_reject_a_bad_pattern(make):
    with pytest.raises(ConfigError, match="pattern='4:2' is invalid"):
        make(0.5, pattern="4:2")


def test_pai_synflow_and_random_give_two_four():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    for score in ("synflow", "random"):
        masks = pai_masks(net, 0.6, score, input_shape=(8,), rounds=3, pattern="2:4")
        assert_two_four(masks, 0.6)


def test_tiny_gpt2_conv1d_layers_are_two_four_along_their_input_dimension():
    pytest.importorskip("transformers")
    from hf_models import tiny_gpt2

    torch.manual_seed(6)
    model = tiny_gpt2()
    masks = magnitude_prune(model, 0.5, pattern="2:4")
    layers = dict(model.named_modules())
    assert any(is_transposed(layers[name]) for name in masks)
    for name, mask in masks.items():
        assert (groups(mask, 4, transposed=is_transposed(layers[name])).sum(-1) == 2).all(), name


def test_two_pruners_that_differ_only_in_pattern_keep_their_own_state():
    """Lightning keys callback state by ``state_key``: the pattern is part of it, and an
    unstructured pruner keeps the key it had before patterns existed."""
    from sparsify.callbacks import MagnitudePruning, PruneAtEnd

    assert MagnitudePruning(pattern="2:4").state_key != MagnitudePruning().state_key
    assert PruneAtEnd(0.5, pattern="2:4").state_key != PruneAtEnd(0.5).state_key
    assert "pattern" not in PruneAtEnd(0.5).state_key
