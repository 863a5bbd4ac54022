"""HAM: the multiplicative step after the optimizer's step, its callback and recipes."""

import importlib
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import sparsify.configs
from helpers import UserModule, blobs, trainer
from sparsify.callbacks import HAM, MagnitudePruning
from sparsify.callbacks.prune_at_init import PruneAtInit
from sparsify.errors import ConfigError
from sparsify.masks import sparsity_report
from sparsify.optim import HAM as HAMOptimizer

CONFIGS = Path(sparsify.configs.__file__).parent


def test_step_equals_the_formula_on_a_small_tensor():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    grad_w, grad_b = torch.randn(2, 3), torch.randn(2)
    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    lr, alpha, beta = 0.01, 200.0, 1e-3
    opt = HAMOptimizer(torch.optim.SGD(layer.parameters(), lr=lr), alpha, beta)
    layer.weight.grad, layer.bias.grad = grad_w.clone(), grad_b.clone()
    opt.step()

    after_sgd = w0 - lr * grad_w
    expected = after_sgd * torch.exp(lr * (-alpha * torch.sign(after_sgd) * grad_w - beta))
    torch.testing.assert_close(layer.weight.detach(), expected)
    torch.testing.assert_close(layer.bias.detach(), b0 - lr * grad_b)
    assert not torch.allclose(expected, after_sgd)


def test_biases_and_norm_parameters_are_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(16))
    plain = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(5, 2, 4, 4)
    net(x).square().mean().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    opt = HAMOptimizer(torch.optim.AdamW(net.parameters(), lr=0.01, weight_decay=0.1))
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
    opt = HAMOptimizer(inner)
    layer(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = opt.state_dict()
    fresh = HAMOptimizer(torch.optim.SGD(layer.parameters(), lr=0.5, momentum=0.9))
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == 0.1
    assert torch.equal(
        fresh.state[layer.weight]["momentum_buffer"], inner.state[layer.weight]["momentum_buffer"]
    )


@pytest.mark.parametrize("kwargs", [{"alpha": -1.0}, {"beta": -0.1}])
def test_bad_arguments_fail_with_config_error(kwargs):
    with pytest.raises(ConfigError, match="is invalid"):
        HAM(**kwargs)


def fit(tmp_path, callbacks, max_epochs, ckpt_path=None):
    torch.manual_seed(0)
    module = UserModule()
    data = DataLoader(TensorDataset(*blobs()), batch_size=16)  # fixed order: resumable
    run = trainer(tmp_path, callbacks, max_epochs=max_epochs, enable_checkpointing=False)
    run.fit(module, data, ckpt_path=ckpt_path)
    return run, module


def test_trainer_run_wraps_the_users_optimizer_and_resumes(tmp_path):
    # The published α = 200 with this module's SGD lr 0.1 multiplies weights by e^(20 |∇L|):
    # it diverges here (docs/performance.md); a smaller α keeps the run finite.
    run, straight = fit(tmp_path / "a", [HAM(alpha=5.0)], max_epochs=4)
    assert isinstance(run.optimizers[0], HAMOptimizer)
    assert isinstance(run.optimizers[0].optimizer, torch.optim.SGD)
    _, plain = fit(tmp_path / "b", [], max_epochs=4)
    assert all(torch.isfinite(p).all() for p in straight.parameters())
    assert not torch.allclose(straight.net[0].weight, plain.net[0].weight)

    first, _ = fit(tmp_path / "c", [HAM(alpha=5.0)], max_epochs=2)
    first.save_checkpoint(tmp_path / "half.ckpt")
    half = tmp_path / "half.ckpt"
    _, resumed = fit(tmp_path / "d", [HAM(alpha=5.0)], max_epochs=4, ckpt_path=half)
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
    run, module = fit(tmp_path, [HAM(alpha=20.0), pruner], max_epochs=4)
    assert isinstance(run.optimizers[0], HAMOptimizer)
    assert sparsity_report(module)["global"] == pytest.approx(0.8, abs=0.01)
    assert all(torch.isfinite(p).all() for p in module.parameters())


@pytest.mark.parametrize("recipe", ["ham", "ham_gmp", "ham_pai"])
def test_recipes_build_their_callbacks(recipe):
    config = yaml.safe_load((CONFIGS / "method" / f"{recipe}.yaml").read_text())
    callbacks = []
    for entry in config["trainer"]["callbacks"]:
        module_name, _, name = entry["class_path"].rpartition(".")
        callbacks.append(getattr(importlib.import_module(module_name), name)(**entry["init_args"]))
    ham = callbacks[0]
    assert isinstance(ham, HAM) and (ham.alpha, ham.beta) == (200.0, 1e-3)
    assert len(callbacks) == (1 if recipe == "ham" else 2)
