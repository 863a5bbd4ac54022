import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import UserModule, loaders, trainer
from sparsify import ConfigError, reparametrize, rescale_, sparsity_report
from sparsify.callbacks.prune_at_init import PruneAtInit
from sparsify.masks import layer_densities, select_mask, set_masks
from sparsify.pai import (
    grasp_batches,
    grasp_scores,
    pai_masks,
    prune_at_init,
    scoring_copy,
    snip_scores,
    synflow_scores,
)
from sparsify.reparam import layer_masks, prunable_layers

pytestmark = pytest.mark.usefixtures("one_thread")


def kept(module) -> int:
    return sum(int(m.sum()) for m in layer_masks(module).values())


# Layer densities.


def test_erk_densities_by_hand():
    # conv (8, 4, 3, 3): 288 weights, raw (8+4+3+3)/288; linear (10, 32): 320, raw 42/320.
    net = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Linear(32, 10))
    densities = layer_densities(net, 0.8, "erk")
    epsilon = round(0.2 * 608) / (18 + 42)  # 122 weights kept
    assert densities == pytest.approx({"0": epsilon * 18 / 288, "1": epsilon * 42 / 320})


def test_erk_makes_layers_dense_and_solves_again():
    # A (100, 100): raw·n = 200; B (2, 100): raw 102/200; C (10, 20): raw 30/200.
    net = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 2), nn.Linear(20, 10))
    densities = layer_densities(net, 0.8, "erk")
    # 2080 weights kept. ε = 2080/332 puts B over 1 (C at 0.94); without B, ε = 1880/230
    # puts C over 1 too; A keeps the remaining 1680 of its 10000.
    assert densities == pytest.approx({"0": 0.168, "1": 1.0, "2": 1.0})
    pruned = copy.deepcopy(net)
    prune_at_init(pruned, 0.8, "random", distribution="erk")
    assert kept(pruned) == 2080


def test_dense_layers_count_towards_the_target():
    net = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 2), nn.Linear(20, 10))
    uniform = layer_densities(net, 0.8, "uniform", dense_layers=["1"])
    assert uniform == pytest.approx({"0": 1880 / 10200, "1": 1.0, "2": 1880 / 10200})
    erk = layer_densities(net, 0.7, "erk", dense_layers=["last"])
    assert erk["2"] == 1.0
    assert sum(d * n for d, n in zip(erk.values(), (10000, 200, 200))) == pytest.approx(3120)


def test_global_densities_follow_one_threshold():
    net = nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 10), nn.Linear(10, 5))
    scores = {name: torch.rand(layer.weight.shape) for name, layer in net.named_children()}
    densities = layer_densities(net, 0.5, "global", dense_layers=["last"], scores=scores)
    # 425 of 850 weights kept, 50 of them the dense last layer: the best 375 of the others.
    threshold = torch.cat([scores["0"].flatten(), scores["1"].flatten()]).topk(375).values[-1]
    assert densities == pytest.approx(
        {
            "0": (scores["0"] >= threshold).float().mean().item(),
            "1": (scores["1"] >= threshold).float().mean().item(),
            "2": 1.0,
        }
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(distribution="erk", dense_layers=["0"]), r"dense_layers=\['0'\].*600 weights"),
        (dict(distribution="uniform", dense_layers=["fc*"]), r"'fc\*' is invalid.*0, 1, 2"),
        (dict(distribution="ring"), r"distribution='ring' is invalid.*uniform, global, erk"),
    ],
)
def test_impossible_layer_densities_are_refused(kwargs, message):
    net = nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 10), nn.Linear(10, 5))
    with pytest.raises(ConfigError, match=message):
        layer_densities(net, 0.7, **kwargs)


@pytest.mark.parametrize("distribution", ["uniform", "global", "erk"])
def test_parameter_weighted_density_is_the_target(distribution):
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 32, 3), nn.Linear(288, 10))
    n = 3 * 16 * 9 + 16 * 32 * 9 + 2880
    prune_at_init(net, 0.93, "magnitude", distribution=distribution, dense_layers=["first"])
    assert abs(kept(net) - round(0.07 * n)) <= 3
    assert layer_masks(net)["0"].all()


# Scores.


def small_net():
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_snip_is_the_gradient_times_the_weight():
    net = small_net()
    x, y = data()
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), [net[0].weight, net[2].weight])
    scores = snip_scores(net, [(x, y)])
    assert torch.allclose(scores["0"], (grads[0] * net[0].weight).abs())
    assert torch.allclose(scores["2"], (grads[1] * net[2].weight).abs())
    assert net[0].weight.grad is None  # the model itself is not touched


def test_grasp_scores_are_theta_times_hessian_gradient_and_the_lowest_are_pruned():
    net = small_net()
    x, y = data()
    shapes = [net[0].weight.shape, net[2].weight.shape]
    theta = torch.cat([net[0].weight.detach().flatten(), net[2].weight.detach().flatten()])

    def loss(flat):
        w0, w2 = flat[:128].view(shapes[0]), flat[128:].view(shapes[1])
        hidden = torch.tanh(F.linear(x, w0, net[0].bias))
        return F.cross_entropy(F.linear(hidden, w2, net[2].bias) / 200, y)

    g = torch.autograd.functional.jacobian(loss, theta)
    hessian = torch.autograd.functional.hessian(loss, theta)
    expected = theta * (hessian @ g)
    scores = grasp_scores(net, [(x, y)], temperature=200)
    assert torch.allclose(torch.cat([scores["0"].flatten(), scores["2"].flatten()]), expected)
    mask = pai_masks(net, 0.5, "grasp", dataloader=[(x, y)])
    flat_mask = torch.cat([mask["0"].flatten(), mask["2"].flatten()])
    assert torch.equal(flat_mask.bool(), expected >= expected.sort().values[88])


def test_grasp_scores_on_class_balanced_data_as_the_reference():
    """Conformance with alecwangcq/GraSP, pruner/GraSP.py: ``GraSP_fetch_data`` takes the first
    ``samples_per_class`` examples of each class in loader order, concatenated class by class;
    g is the sum of the gradients of the two halves, H g the sum over the halves of
    ∇(g · ∇L_half), the score −θ ⊙ H g with the largest pruned (logits / 200 throughout). In our
    words, on a small CNN with BatchNorm; ours averages over the halves (a factor ¼)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 3)
    )
    x, y = torch.randn(30, 1, 6, 6), torch.tensor([2, 0, 0, 1, 2, 2, 0, 1, 1, 0] * 3)
    loader = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 30, 4)]

    per_class = {c: [i for i in range(30) if y[i] == c][:3] for c in range(3)}
    order = [i for c in range(3) for i in per_class[c]]
    xs, ys = x[order], y[order]
    halves = [(xs[:4], ys[:4]), (xs[4:], ys[4:])]
    reference = copy.deepcopy(net).train()
    weights = [reference[0].weight, reference[4].weight]

    def half_loss(half):
        return F.cross_entropy(reference(half[0]) / 200, half[1])

    g = [sum(parts) for parts in zip(*(torch.autograd.grad(half_loss(h), weights) for h in halves))]
    hg = [torch.zeros_like(w) for w in weights]
    for half in halves:
        grads = torch.autograd.grad(half_loss(half), weights, create_graph=True)
        dot = sum((gi.detach() * fi).sum() for gi, fi in zip(g, grads))
        for acc, part in zip(hg, torch.autograd.grad(dot, weights)):
            acc += part
    reference_scores = [-(w * h).detach() for w, h in zip(weights, hg)]

    batches = grasp_batches(net, loader, samples_per_class=3)
    assert [b[1].tolist() for b in batches] == [[0, 0, 0, 1], [1, 1, 2, 2, 2]]
    ours = grasp_scores(net, batches)
    for name, expected in zip(["0", "4"], reference_scores):
        torch.testing.assert_close(-4 * ours[name], expected)
    mask = pai_masks(net, 0.5, "grasp", dataloader=loader, samples_per_class=3)
    flat = torch.cat([s.flatten() for s in reference_scores])
    kept_by_reference = flat <= flat.sort().values[round(0.5 * flat.numel()) - 1]
    assert torch.equal(
        torch.cat([mask["0"].flatten(), mask["4"].flatten()]).bool(), kept_by_reference
    )


def test_grasp_refuses_data_without_enough_examples_of_a_class():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    loader = [(torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 2]))]
    with pytest.raises(
        ConfigError, match=r"samples_per_class=2 is invalid for this data: classes \[2\]"
    ):
        pai_masks(net, 0.5, "grasp", dataloader=loader, samples_per_class=2)


def test_grasp_mask_keeps_the_gradient_flow():
    """Pruning the lowest θ ⊙ Hg raises ‖g‖² (to first order by −2 θ ⊙ Hg over the removed
    weights); pruning the highest lowers it."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
    x, y = torch.randn(64, 8), torch.randint(0, 4, (64,))

    def grad_norm(model):
        scorer, weights = scoring_copy(model)
        grads = torch.autograd.grad(F.cross_entropy(scorer(x) / 200, y), list(weights.values()))
        return sum(float((g**2).sum()) for g in grads)

    scores = grasp_scores(net, [(x, y)])
    grasp, reverse = copy.deepcopy(net), copy.deepcopy(net)
    theta = {name: layer.weight for name, layer in prunable_layers(net)}
    set_masks(grasp, select_mask(scores, theta, 0.5))
    set_masks(reverse, select_mask({k: -v for k, v in scores.items()}, theta, 0.5))
    assert grad_norm(grasp) > grad_norm(net) > grad_norm(reverse)


def test_synflow_conserves_the_score_in_every_layer_of_a_linear_chain():
    chain = nn.Sequential(
        nn.Linear(5, 7, bias=False),
        nn.ReLU(),
        nn.Linear(7, 6, bias=False),
        nn.Linear(6, 3, bias=False),
    )
    w = [chain[0].weight.detach(), chain[2].weight.detach(), chain[3].weight.detach()]
    r = (w[2].abs().double() @ w[1].abs().double() @ w[0].abs().double()).sum(0) @ torch.ones(
        5, dtype=torch.float64
    )
    scores = synflow_scores(chain, (5,))
    for name in ("0", "2", "3"):
        assert scores[name].dtype == torch.float64
        assert float(scores[name].sum()) == pytest.approx(float(r), rel=1e-12)


def test_synflow_is_finite_in_a_deep_net_where_float32_overflows():
    torch.manual_seed(0)
    chain = nn.Sequential(*[nn.Linear(32, 32, bias=False) for _ in range(40)])
    for layer in chain:
        nn.init.normal_(layer.weight)  # each layer multiplies the all-ones signal by ~25
    scores = synflow_scores(chain, (32,))
    sums = torch.stack([s.sum() for s in scores.values()])
    assert float(sums[0]) > torch.finfo(torch.float32).max
    assert torch.isfinite(sums).all()
    assert torch.allclose(sums, sums[0], rtol=1e-9)
    prune_at_init(chain, 0.9, "synflow", input_shape=(32,), rounds=10)
    assert kept(chain) == round(0.1 * 40 * 32 * 32)


def bn_net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)
    )


def test_synflow_ignores_batchnorm_statistics_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    net = bn_net()
    reference = synflow_scores(net, (1, 4, 4))
    with torch.no_grad():
        net[1].running_mean.fill_(5.0)
        net[1].running_var.fill_(100.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    scores = synflow_scores(net, (1, 4, 4))
    for name in scores:
        assert torch.allclose(scores[name], reference[name])
    prune_at_init(net, 0.8, "synflow", input_shape=(1, 4, 4), rounds=5)
    assert net.training
    after = net.state_dict()
    unmasked = {
        k.replace(".parametrizations.weight.original", ".weight"): v for k, v in after.items()
    }
    for key, value in before.items():
        assert torch.equal(unmasked[key], value), key


@pytest.mark.parametrize("score", ["random", "magnitude", "snip", "grasp", "synflow"])
def test_reparametrized_and_rescaled_models_get_the_same_masks(score):
    """Scores are of the effective θ: plain, m ⊙ w with β = 0.3, and m ⊙ w rescaled to β = 1
    give one mask; masked θ stay exactly 0 after a rescale."""
    torch.manual_seed(0)
    plain = small_net()
    reparam = copy.deepcopy(plain)
    reparametrize(reparam, beta=0.3)
    rescale_(reparam, 1.0)
    batches = [data()]
    got = []
    for model in (plain, reparam):
        torch.manual_seed(1)
        got.append(
            prune_at_init(
                model,
                0.7,
                score,
                distribution="global",
                dataloader=batches,
                input_shape=(8,),
                rounds=3,
            )
        )
    for name in got[0]:
        assert torch.equal(got[0][name], got[1][name])
    rescale_(reparam, 1.0)
    for name, layer in reparam.named_children():
        if name in got[1]:
            assert (layer.weight[got[1][name] == 0] == 0).all()
            assert torch.allclose(layer.weight, plain[int(name)].weight, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(score="hessian"), r"score='hessian' is invalid.*random, magnitude, snip"),
        (dict(score="snip"), r"score='snip' needs data"),
        (dict(score="synflow"), r"score='synflow' needs the input shape"),
        (dict(score="grasp", dataloader=[], temperature=0), r"temperature=0 is invalid"),
        (dict(score="magnitude", score_mode="test"), r"score_mode='test' is invalid.*eval, train"),
        (dict(score="magnitude", shuffle=True, pattern="2:4"), r"shuffle=True is invalid with"),
    ],
)
def test_bad_pai_arguments_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        prune_at_init(small_net(), 0.5, **kwargs)


# The callback.


class RecordMasks(L.Callback):
    """The masks as the first optimizer step sees them."""

    def __init__(self):
        self.first = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.first is None:
            self.first = {k: v.clone() for k, v in layer_masks(pl_module).items()}


def test_prune_at_init_masks_before_the_first_step_and_resumes_without_scoring_again(tmp_path):
    record = RecordMasks()
    L.seed_everything(0)
    first = trainer(tmp_path, [PruneAtInit(0.8, score="snip", num_batches=2), record], 1)
    first.fit(UserModule(), *loaders())
    n = 8 * 32 + 32 * 3
    assert sum(int(m.sum()) for m in record.first.values()) == round(0.2 * n)
    first.save_checkpoint(tmp_path / "pai.ckpt")

    L.seed_everything(1)  # another seed: scoring again would give another mask
    resumed_callback = PruneAtInit(0.8, score="snip", num_batches=2)
    module = UserModule()
    resumed = trainer(tmp_path, [resumed_callback], 2)
    resumed.fit(module, *loaders(), ckpt_path=tmp_path / "pai.ckpt")
    assert resumed_callback.done
    for name, mask in layer_masks(module).items():
        assert torch.equal(mask, record.first[name])
    assert sparsity_report(module)["global"] == pytest.approx(1 - round(0.2 * n) / n)


@pytest.mark.parametrize(
    "pruner",
    [
        lambda: PruneAtInit(0.5, score="grasp", num_batches=3),
        lambda: PruneAtInit(0.5, score="snip", shuffle=True, reinitialize=True),
    ],
    ids=["grasp", "snip_shuffled_reinitialized"],
)
def test_prune_at_init_does_not_change_the_training_data_order(tmp_path, pruner):
    """Scoring reads batches, and the sanity checks draw, under a forked random state: the run
    trains on what it would have trained on without them."""
    seen = []

    class RecordBatches(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch[1].clone())

    for callbacks in ([pruner()], []):
        L.seed_everything(0)
        trainer(tmp_path, [*callbacks, RecordBatches()], 1).fit(UserModule(), *loaders())
    half = len(seen) // 2
    assert all(torch.equal(a, b) for a, b in zip(seen[:half], seen[half:]))


def test_prune_at_init_arguments_are_checked_early():
    with pytest.raises(ConfigError, match="num_batches=0 is invalid"):
        PruneAtInit(0.9, score="snip", num_batches=0)
    with pytest.raises(ConfigError, match=r"sparsity=1.0 is invalid"):
        PruneAtInit(1.0)
    with pytest.raises(ConfigError, match=r"score_mode='batch' is invalid"):
        PruneAtInit(0.9, score="snip", score_mode="batch")
    with pytest.raises(ConfigError, match=r"shuffle=True is invalid with pattern='2:4'"):
        PruneAtInit(0.5, shuffle=True, pattern="2:4")


# Sanity checks (Frankle et al. 2021; Synaptic-Flow's prune loop has the three).


def layer_counts(masks: dict) -> dict:
    return {name: int(mask.sum()) for name, mask in masks.items()}


def test_shuffle_keeps_each_layers_density_moves_the_positions_and_is_seeded():
    torch.manual_seed(0)
    net = small_net()
    plain = pai_masks(net, 0.5, "magnitude", distribution="global")
    assert all(0 < count < plain[n].numel() for n, count in layer_counts(plain).items())
    shuffled = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        shuffled.append(pai_masks(net, 0.5, "magnitude", distribution="global", shuffle=True))
    for masks in shuffled:
        assert layer_counts(masks) == layer_counts(plain)
        assert all(not torch.equal(masks[n], plain[n]) for n in plain)
    assert all(torch.equal(shuffled[0][n], shuffled[1][n]) for n in plain)
    assert any(not torch.equal(shuffled[0][n], shuffled[2][n]) for n in plain)
    # The kept weights are no longer the largest: their mean |θ| falls to about the layer's.
    theta = net[0].weight.abs()
    assert theta[shuffled[0]["0"].bool()].mean() < theta[plain["0"].bool()].mean() * 0.8


def test_reinitialize_changes_the_kept_weights_but_not_the_mask():
    """On θ = m ⊙ w (β = 1): the kept θ take new values, drawn from the layer's own initial
    values (a permutation of them all), the mask is the one the scores chose, m² − w² stays β."""
    torch.manual_seed(0)
    net = small_net()
    reparametrize(net, beta=1.0)
    before = {name: layer.weight.detach().clone() for name, layer in prunable_layers(net)}
    expected = pai_masks(net, 0.5, "magnitude")
    torch.manual_seed(1)
    masks = prune_at_init(net, 0.5, "magnitude", reinitialize=True)
    for name, layer in prunable_layers(net):
        assert torch.equal(masks[name], expected[name])
        assert torch.equal(layer_masks(net)[name], expected[name])
        kept, theta = expected[name].bool(), layer.weight.detach()
        assert not torch.allclose(theta[kept], before[name][kept])
        assert (theta[~kept] == 0).all()
        stored = layer.parametrizations.weight
        m, w = stored.original0.detach(), stored.original1.detach()
        values = (m * w).flatten().sort().values
        torch.testing.assert_close(values, before[name].flatten().sort().values)
        torch.testing.assert_close(m**2 - w**2, torch.ones_like(m))


def test_invert_keeps_the_lowest_scores():
    torch.manual_seed(0)
    net = small_net()
    x, y = data()
    scores = snip_scores(net, [(x, y)])
    flat = torch.cat([s.flatten() for s in scores.values()])
    masks = pai_masks(net, 0.75, "snip", dataloader=[(x, y)], invert=True)
    kept = torch.cat([masks[name].flatten() for name in scores]).bool()
    assert int(kept.sum()) == round(0.25 * flat.numel())
    assert flat[kept].max() < flat[~kept].min()
    magnitude = pai_masks(net, 0.75, "magnitude", distribution="uniform", invert=True)
    for name, layer in prunable_layers(net):
        theta, keep = layer.weight.abs(), magnitude[name].bool()
        assert theta[keep].max() < theta[~keep].min()
    # SynFlow in one round: the lowest of its scores
    synflow = synflow_scores(net, (8,))
    flat = torch.cat([s.flatten() for s in synflow.values()])
    masks = pai_masks(net, 0.75, "synflow", input_shape=(8,), rounds=1, invert=True)
    kept = torch.cat([masks[name].flatten() for name in synflow]).bool()
    assert flat[kept].max() < flat[~kept].min()
