import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers import UserModule, blobs, trainer
from sparsify import ConfigError
from sparsify.callbacks import L1Penalty
from sparsify.reparam import reparametrize

LR, STRENGTH = 0.1, 0.01
M, W = "net.0.parametrizations.weight.original0", "net.0.parametrizations.weight.original1"


def one_step(tmp_path, callbacks, factors):
    """Parameters (by name) before and after one SGD step of the user's module (no weight
    decay), reparametrized as m ⊙ w with ``factors``."""
    L.seed_everything(0)
    module = UserModule(lr=LR, weight_decay=0.0)
    if factors:
        reparametrize(module)
    train = DataLoader(TensorDataset(*blobs()), batch_size=16)
    t = trainer(tmp_path, callbacks, max_steps=1, limit_val_batches=0)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    t.fit(module, train)
    return before, {n: p.detach().clone() for n, p in module.named_parameters()}


def penalty_step(tmp_path, penalty, factors=True):
    """The parameters before the step, and what the penalty adds to the step of each."""
    before, plain = one_step(tmp_path, [], factors)
    _, penalized = one_step(tmp_path, [penalty], factors)
    return before, {n: penalized[n] - plain[n] for n in before}


def test_l1_on_theta_of_m_and_w_adds_its_subgradient(tmp_path):
    before, extra = penalty_step(tmp_path, L1Penalty(STRENGTH, on="theta"))
    m, w = before[M], before[W]
    sign = torch.sign(m * w)
    torch.testing.assert_close(extra[M], -LR * STRENGTH * sign * w)
    torch.testing.assert_close(extra[W], -LR * STRENGTH * sign * m)
    assert extra["net.0.bias"].abs().max() < 1e-7


def test_l1_on_the_mask_moves_only_m(tmp_path):
    before, extra = penalty_step(tmp_path, L1Penalty(STRENGTH, on="m"))
    torch.testing.assert_close(extra[M], -LR * STRENGTH * torch.sign(before[M]))
    assert extra[W].abs().max() < 1e-7


def test_l1_on_plain_weights_shrinks_every_weight_by_the_same_step(tmp_path):
    before, extra = penalty_step(tmp_path, L1Penalty(STRENGTH, on="theta"), factors=False)
    expected = -LR * STRENGTH * torch.sign(before["net.0.weight"])
    torch.testing.assert_close(extra["net.0.weight"], expected)


def test_l1_on_m_without_factors_is_a_clear_error(tmp_path):
    train = DataLoader(TensorDataset(*blobs()), batch_size=16)
    t = trainer(tmp_path, [L1Penalty(0.1, on="m")], max_epochs=1, limit_val_batches=0)
    with pytest.raises(ConfigError, match="add the Reparametrize callback"):
        t.fit(UserModule(), train)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"strength": -1.0}, "strength=-1.0 is invalid"), ({"strength": 1.0, "on": "w"}, "on='w'")],
)
def test_bad_arguments_fail_in_init(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        L1Penalty(**kwargs)
