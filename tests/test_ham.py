"""HAM: the multiplicative step after the optimizer's step, its callback and recipes."""

import copy
import importlib
import importlib.util
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import sparsify.configs
from helpers import UserModule, blobs, load_script, trainer
from sparsify.callbacks import (
    ContinuousSparsification,
    HAMStep,
    MagnitudePruning,
    PILoT,
    Reparametrize,
    WeightDecaySchedule,
)
from sparsify.callbacks.prune_at_init import PruneAtInit
from sparsify.errors import ConfigError
from sparsify.lightning.module import lr_scheduler
from sparsify.masks import sparsity_report
from sparsify.optim import HAM

CONFIGS = Path(sparsify.configs.__file__).parent


def test_step_equals_the_formula_on_a_small_tensor():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    grad_w, grad_b = torch.randn(2, 3), torch.randn(2)
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    lr, alpha, beta = 0.01, 200.0, 1e-3
    opt = HAM(torch.optim.SGD(layer.parameters(), lr=lr), alpha, beta)
    layer.weight.grad, layer.bias.grad = grad_w.clone(), grad_b.clone()
    opt.step()

    after_sgd = w0 - lr * grad_w
    exponent = (lr * (-alpha * torch.sign(after_sgd) * grad_w - beta)).clamp(-5, 5)
    torch.testing.assert_close(layer.weight.detach(), after_sgd * torch.exp(exponent))
    torch.testing.assert_close(layer.bias.detach(), b0 - lr * grad_b)
    assert not torch.allclose(exponent, torch.zeros_like(exponent))


def reference_ham_step(optimizer, alpha, beta, max_weight_norm=1000.0):
    """The HAM step of the authors' wrapper, re-derived in our words from ``HamOptimizerWrapper``
    in the README of TomJacobs05/HAM: per parameter with a gradient, in group order, a Python
    branch for each safeguard (skip a tensor whose weight or gradient has NaN; for ≥ 2 dims
    multiply the non-zero entries by exp(clamp(lr·(−α·sign(θ)·∇f − β), −5, 5)) and undo it if
    NaN appears; then scale the tensor back to ``max_weight_norm`` if its norm exceeds it)."""
    with torch.no_grad():
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None or p.isnan().any() or p.grad.isnan().any():
                    continue
                if p.ndim >= 2:
                    before = p.clone()
                    exponent = group["lr"] * (-alpha * p.sign() * p.grad - beta)
                    factor = exponent.clamp(-5.0, 5.0).exp()
                    nonzero = p != 0
                    p[nonzero] = p[nonzero] * factor[nonzero]
                    if p.isnan().any():
                        p.copy_(before)
                        continue
                norm = p.norm()
                if norm > max_weight_norm:
                    p.mul_(max_weight_norm / norm)


def test_matches_the_reference_wrapper_over_several_steps():
    """Conformance with TomJacobs05/HAM (README.md, ``HamOptimizerWrapper.step``): SGD with
    momentum then the HAM step, five steps on a small network where every safeguard acts (the
    exponent is clamped, pruned zeros stay 0, a layer is norm-clipped)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        net[0].weight[:, :2] = 0.0  # pruned: with inputs 0 there, no gradient moves them
        net[3].weight.mul_(20)  # norm well above the clip below
    twin = copy.deepcopy(net)
    lr, alpha, beta, clip = 0.1, 200.0, 1e-3, 5.0

    def sgd(model):
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    ours = HAM(sgd(net), alpha, beta, max_weight_norm=clip)
    plain = sgd(twin)
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    x[:, :2] = 0.0
    clamped = clipped = False
    for _ in range(5):
        for model, opt in ((net, ours), (twin, plain)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
        exponent = lr * alpha * (net[3].weight.grad.abs().max())
        clamped |= bool(exponent > 5)
        ours.step()
        plain.step()
        reference_ham_step(plain, alpha, beta, max_weight_norm=clip)
        for (name, a), b in zip(net.named_parameters(), twin.parameters()):
            torch.testing.assert_close(a, b, msg=name)
        clipped |= net[3].weight.norm().item() == pytest.approx(clip, rel=1e-9)
    assert clamped and clipped
    assert (net[0].weight[:, :2] == 0).all()


def test_a_tensor_with_nan_keeps_the_ordinary_step():
    def step(**options):
        torch.manual_seed(0)
        layer = nn.Linear(3, 2)
        opt = HAM(torch.optim.SGD(layer.parameters(), lr=0.1), **options)
        layer.weight.grad = torch.full((2, 3), 0.5)
        layer.weight.grad[0, 0] = float("nan")  # a bad batch: SGD makes this entry NaN
        layer.bias.grad = torch.zeros(2)
        after_sgd = layer.weight.detach() - 0.1 * layer.weight.grad
        opt.step()
        return layer.weight.detach(), after_sgd

    reverted, after_sgd = step()
    torch.testing.assert_close(reverted, after_sgd, equal_nan=True, rtol=0, atol=0)
    unguarded, after_sgd = step(revert_nan=False)
    assert not torch.allclose(unguarded[1], after_sgd[1])


def ham_step_on_one_row(grad=-1.0, **options):
    """The HAM step alone (no ordinary step) with lr 10, α 1 on rows [0, 1, −1, 2]."""
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 1.0, -1.0, 2.0]] * 3))
    layer.weight.grad = torch.full((3, 4), grad)
    layer.weight.grad[:, 0] = float("inf")  # at the zero entries: sign 0 · inf is NaN
    HAM(torch.optim.SGD(layer.parameters(), lr=10.0), alpha=1.0, **options).hyperbolic_step()
    return layer.weight.detach()


def test_each_safeguard_can_be_switched_off():
    # lr·(−α·sign(θ)·∇f − β) = 10·(sign(θ) − 0.001): ±9.99 or −10.01 before the clamp.
    kept_zeros = ham_step_on_one_row(revert_nan=False)
    assert (kept_zeros[:, 0] == 0).all()
    assert kept_zeros[0, 1] == pytest.approx(math.exp(5.0), rel=1e-5)
    assert kept_zeros[0, 2] == pytest.approx(-math.exp(-5.0), rel=1e-5)
    assert ham_step_on_one_row(revert_nan=False, skip_zeros=False)[:, 0].isnan().all()
    # The NaN exponent at the zero entries makes the whole tensor keep its old value.
    assert torch.equal(ham_step_on_one_row(), torch.tensor([[0.0, 1.0, -1.0, 2.0]] * 3))

    unclamped = ham_step_on_one_row(revert_nan=False, max_exponent=None, max_weight_norm=None)
    assert unclamped[0, 1] == pytest.approx(math.exp(9.99), rel=1e-5)
    assert unclamped.norm() > 1000
    clipped = ham_step_on_one_row(revert_nan=False, max_exponent=None)
    assert clipped.norm() == pytest.approx(1000.0, rel=1e-5)
    torch.testing.assert_close(clipped, unclamped * 1000.0 / unclamped.norm())


def test_biases_and_norm_parameters_are_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(16))
    plain = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(5, 2, 4, 4)
    net(x).square().mean().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    opt = HAM(torch.optim.AdamW(net.parameters(), lr=0.01, weight_decay=0.1))
    reference = torch.optim.AdamW([nn.Parameter(p) for p in plain], lr=0.01, weight_decay=0.1)
    for p, g in zip(reference.param_groups[0]["params"], grads):
        p.grad = g
    opt.step()
    reference.step()
    for (name, p), ref in zip(net.named_parameters(), reference.param_groups[0]["params"]):
        if p.ndim < 2:
            assert torch.equal(p, ref), name
        else:
            assert not torch.allclose(p, ref), name


def test_state_dict_is_the_wrapped_optimizers():
    layer = nn.Linear(3, 2)
    inner = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    opt = HAM(inner)
    layer(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    fresh = HAM(torch.optim.SGD(layer.parameters(), lr=0.5, momentum=0.9))
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == 0.1
    assert torch.equal(
        fresh.state[layer.weight]["momentum_buffer"], inner.state[layer.weight]["momentum_buffer"]
    )


@pytest.mark.parametrize("kwargs", [{"alpha": -1.0}, {"beta": -0.1}])
def test_bad_arguments_fail_with_config_error(kwargs):
    with pytest.raises(ConfigError, match="is invalid"):
        HAMStep(**kwargs)


def fit(tmp_path, callbacks, max_epochs, ckpt_path=None):
    torch.manual_seed(0)
    module = UserModule()
    data = DataLoader(TensorDataset(*blobs()), batch_size=16)  # fixed order: resumable
    run = trainer(tmp_path, callbacks, max_epochs=max_epochs, enable_checkpointing=False)
    run.fit(module, data, ckpt_path=ckpt_path)
    return run, module


def test_trainer_run_wraps_the_users_optimizer_and_resumes(tmp_path):
    # The published α = 200 with this module's SGD lr 0.1 makes lr·α·|∇f| reach the clamp of
    # the exponent (docs/performance.md); a smaller α trains.
    run, straight = fit(tmp_path / "a", [HAMStep(alpha=5.0)], max_epochs=4)
    assert isinstance(run.optimizers[0], HAM)
    assert isinstance(run.optimizers[0].optimizer, torch.optim.SGD)
    _, plain = fit(tmp_path / "b", [], max_epochs=4)
    assert all(torch.isfinite(p).all() for p in straight.parameters())
    assert not torch.allclose(straight.net[0].weight, plain.net[0].weight)

    first, _ = fit(tmp_path / "c", [HAMStep(alpha=5.0)], max_epochs=2)
    first.save_checkpoint(tmp_path / "half.ckpt")
    half = tmp_path / "half.ckpt"
    _, resumed = fit(tmp_path / "d", [HAMStep(alpha=5.0)], max_epochs=4, ckpt_path=half)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize(
    "pruner",
    [
        MagnitudePruning(final_sparsity=0.8, start=0.1, end=0.5, frequency=0.1),
        PruneAtInit(sparsity=0.8, score="magnitude"),
    ],
)
def test_ham_combines_with_pruning(pruner, tmp_path):
    run, module = fit(tmp_path, [HAMStep(alpha=20.0), pruner], max_epochs=4)
    assert isinstance(run.optimizers[0], HAM)
    assert sparsity_report(module)["global"] == pytest.approx(0.8, abs=0.01)
    assert all(torch.isfinite(p).all() for p in module.parameters())


def recipe(name):
    return yaml.safe_load((CONFIGS / "method" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", ["ham", "ham_gmp", "ham_pai"])
def test_recipes_build_their_callbacks(name):
    config = recipe(name)
    callbacks = []
    for entry in config["trainer"]["callbacks"]:
        module_name, _, class_name = entry["class_path"].rpartition(".")
        callbacks.append(
            getattr(importlib.import_module(module_name), class_name)(**entry["init_args"])
        )
    ham = callbacks[0]
    assert isinstance(ham, HAMStep) and (ham.alpha, ham.beta) == (5.0, 1e-3)
    assert ham.options["max_exponent"] == 5.0 and ham.options["max_weight_norm"] == 1000.0
    assert ham.options["skip_zeros"] and ham.options["revert_nan"]
    assert config["model"]["init_args"]["warmup_epochs"] == 1
    assert len(callbacks) == (1 if name == "ham" else 2)


def test_the_recipe_trains_digits_where_the_published_alpha_stays_at_chance(one_thread):
    """α = 200 on digits diverges to NaN without the reference's safeguards; with them it stays
    finite but at chance, and the recipe's α with the warm-up trains (docs/performance.md)."""
    train = load_script("ham_alpha").train  # the digits recipe's training in plain PyTorch
    config = recipe("ham")
    alpha = config["trainer"]["callbacks"][0]["init_args"]["alpha"]
    warmup = config["model"]["init_args"]["warmup_epochs"]
    accuracy, _ = train(alpha, warmup, epochs=3)
    assert accuracy > 0.85
    published, largest_norm = train(200.0, warmup, epochs=3)
    assert published < 0.3
    assert math.isfinite(largest_norm) and largest_norm <= 1000 * (1 + 1e-6)


class WarmUpModule(UserModule):
    """The user's module with the training module's schedule: a 10-step linear warm-up, then a
    cosine, chained by ``SequentialLR`` (``sparsify.lightning.module.lr_scheduler``), stepped per
    batch."""

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        total = self.trainer.estimated_stepping_batches
        schedule = lr_scheduler(opt, "cosine", total, warmup=10)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class RecordLearningRates(L.Callback):
    """Every group's learning rate as each optimizer step sees it."""

    def __init__(self):
        self.seen = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.seen.append([g["lr"] for g in optimizer.param_groups])


GROUP_ADDING = {
    "pilot": lambda: [Reparametrize(), PILoT()],
    "weight_decay_pointwise": lambda: [Reparametrize(), WeightDecaySchedule(target="pointwise")],
    "cs": lambda: [ContinuousSparsification()],
}


@pytest.mark.parametrize("ham_first", [True, False], ids=["ham_first", "ham_last"])
@pytest.mark.parametrize("name", sorted(GROUP_ADDING))
def test_ham_with_a_group_adding_callback_and_warm_up(tmp_path, name, ham_first):
    """A callback that splits a new param group out of the user's one group extends the
    scheduler's per-group lists, also when HAMStep has wrapped the optimizer before it: the run
    passes the warm-up milestone and the new group follows the same schedule."""
    torch.manual_seed(0)
    record = RecordLearningRates()
    ham, others = HAMStep(alpha=5.0), GROUP_ADDING[name]()
    callbacks = [ham, *others] if ham_first else [*others, ham]
    data = DataLoader(TensorDataset(*blobs()), batch_size=16)  # 6 steps an epoch
    run = trainer(tmp_path, [*callbacks, record], max_epochs=3, enable_checkpointing=False)
    run.fit(WarmUpModule(), data)
    assert isinstance(run.optimizers[0], HAM)
    assert len(record.seen) == 18 and all(len(lrs) == 2 for lrs in record.seen)
    for lrs in record.seen:
        assert lrs[1] == pytest.approx(lrs[0])
    peak = max(lrs[0] for lrs in record.seen)
    assert record.seen[0][0] == pytest.approx(0.05 / 10) and peak == pytest.approx(0.05)
