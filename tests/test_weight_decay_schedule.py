import math

import lightning as L
import pytest
import torch
from torch import nn
from user_variants import RecordGroups, ScheduledModule, ordered_loaders

from helpers import UserModule, loaders, trainer
from sparsify import ConfigError, pointwise_factors
from sparsify.callbacks.reparametrize import Reparametrize
from sparsify.callbacks.weight_decay import WeightDecaySchedule, WeightDecaySwitchOff
from sparsify.param_groups import split_groups
from sparsify.schedules import make_schedule

STEPS_PER_EPOCH = 6  # 96 samples, batch 16


@pytest.mark.parametrize(
    "schedule, kwargs, points",
    [
        ("constant", {}, [(0, 1.0), (7, 1.0)]),
        ("switch_off", {"at": 0.5}, [(0.0, 1.0), (0.49, 1.0), (0.5, 0.0), (1.0, 0.0)]),
        ("linear", {"end": 4}, [(0, 1.0), (1, 0.75), (4, 0.0), (6, 0.0)]),
        ("cosine", {"end": 4}, [(0, 1.0), (1, (1 + math.cos(math.pi / 4)) / 2), (2, 0.5), (5, 0)]),
        ("exponential", {"rate": 0.95}, [(0, 1.0), (1, 0.95), (10, 0.95**10)]),
        ("inverse", {}, [(0, 1.0), (1, 0.5), (9, 0.1)]),
        ("inverse_square", {}, [(0, 1.0), (1, 0.25), (9, 0.01)]),
        (lambda t: 2.0 * t, {}, [(0, 0.0), (3, 6.0)]),
    ],
)
def test_each_schedule_gives_its_values(schedule, kwargs, points):
    fn = make_schedule(schedule, **kwargs)
    for t, expected in points:
        assert fn(t) == pytest.approx(expected, abs=1e-12)


def _net_and_optimizer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.8**step)
    return net, opt, sched


def _train(net, opt, sched, steps):
    g = torch.Generator().manual_seed(steps)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=g)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
        sched.step()


def test_splitting_a_group_keeps_optimizer_state_and_learning_rate_schedule():
    plain, split = _net_and_optimizer(), _net_and_optimizer()
    for run in (plain, split):
        _train(*run, steps=3)
    net, opt, sched = split
    moved = [net[0].weight, net[2].weight]
    momentum = [opt.state[p]["momentum_buffer"].clone() for p in moved]
    split_groups(opt, moved, [sched])

    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    assert opt.param_groups[1]["name"] == "pointwise"
    assert [id(p) for p in opt.param_groups[1]["params"]] == [id(p) for p in moved]
    assert all(torch.equal(opt.state[p]["momentum_buffer"], b) for p, b in zip(moved, momentum))
    assert len(sched.base_lrs) == len(sched.lr_lambdas) == len(sched.get_last_lr()) == 2
    # Same hyperparameters and state: training goes on exactly as without the split.
    for run in (plain, split):
        _train(*run, steps=3)
    assert [g["lr"] for g in opt.param_groups] == [plain[1].param_groups[0]["lr"]] * 2
    for p, q in zip(plain[0].parameters(), net.parameters()):
        assert torch.equal(p, q)
    # A second split finds nothing to do.
    split_groups(opt, moved, [sched])
    assert len(opt.param_groups) == 2 and len(sched.base_lrs) == 2


def test_target_pointwise_schedules_exactly_m_and_w_of_a_single_group_optimizer(tmp_path):
    module, record = UserModule(weight_decay=1e-3), RecordGroups()
    cbs = [Reparametrize(), WeightDecaySwitchOff(at=0.5, target="pointwise"), record]
    trainer(tmp_path, cbs, max_epochs=4).fit(module, *loaders())

    factors = {id(p) for _, m, w in pointwise_factors(module) for p in (m, w)}
    biases = {id(module.net[0].bias), id(module.net[2].bias)}
    assert len(record.seen) == 4 * STEPS_PER_EPOCH
    for step, ((wd_other, _, other), (wd_mw, _, mw)) in enumerate(record.seen):
        assert set(other) == biases and set(mw) == factors
        assert wd_other == 1e-3
        assert wd_mw == (1e-3 if step < 12 else 0.0)


def test_target_pointwise_keeps_the_learning_rate_schedule_and_takes_its_own_base(tmp_path):
    record = RecordGroups()
    schedule = WeightDecaySchedule(
        "linear", unit="step", end=24, target="pointwise", weight_decay=0.05
    )
    cbs = [Reparametrize(), schedule, record]
    trainer(tmp_path, cbs, max_epochs=2).fit(ScheduledModule(lr=0.1), *loaders())
    for step, ((wd_other, lr_other, _), (wd_mw, lr_mw, _)) in enumerate(record.seen):
        assert lr_mw == lr_other == pytest.approx(0.1 * 0.9**step)
        assert wd_other == 1e-3
        assert wd_mw == pytest.approx(0.05 * (1 - step / 24))


class WeightsAndBiases(UserModule):
    """The user's two groups: weights with weight decay 1e-3, biases without."""

    def configure_optimizers(self):
        weights = [p for p in self.parameters() if p.ndim > 1]
        biases = [p for p in self.parameters() if p.ndim == 1]
        groups = [{"params": weights, "weight_decay": 1e-3}, {"params": biases, "weight_decay": 0}]
        return torch.optim.SGD(groups, lr=0.1)


@pytest.mark.parametrize("scale", [0.0, 4.0])
def test_scale_multiplies_the_configured_weight_decay_of_every_group_that_has_one(tmp_path, scale):
    """The method/wd_* recipes: a strength relative to the experiment's, groups at 0 stay 0."""
    record = RecordGroups()
    schedule = WeightDecaySwitchOff(at=0.5, scale=scale)
    trainer(tmp_path, [schedule, record], max_epochs=2).fit(WeightsAndBiases(), *loaders())
    assert len(record.seen) == 2 * STEPS_PER_EPOCH
    for step, groups in enumerate(record.seen):
        decays = [wd for wd, _, _ in groups]
        assert decays == [(1e-3 * scale if step < STEPS_PER_EPOCH else 0.0), 0.0]


def test_resume_with_a_split_group_equals_an_uninterrupted_run(tmp_path):
    def run(max_epochs, ckpt_path=None):
        record = RecordGroups()
        schedule = WeightDecaySchedule("cosine", unit="epoch", end=4, target="pointwise")
        t = trainer(tmp_path, [Reparametrize(), schedule, record], max_epochs=max_epochs)
        L.seed_everything(0)
        module = ScheduledModule(weight_decay=1e-2)
        t.fit(module, *ordered_loaders(), ckpt_path=ckpt_path)
        return t, module, [[(wd, lr) for wd, lr, _ in groups] for groups in record.seen]

    first, _, _ = run(2)
    first.save_checkpoint(tmp_path / "mid.ckpt")
    _, resumed_module, resumed = run(4, ckpt_path=tmp_path / "mid.ckpt")
    _, straight_module, straight = run(4)
    assert resumed == straight[2 * STEPS_PER_EPOCH :]
    assert resumed[0][1][0] == pytest.approx(1e-2 * 0.5)  # cos at epoch 2 of 4
    resumed_state, straight_state = resumed_module.state_dict(), straight_module.state_dict()
    assert all(torch.equal(resumed_state[k], straight_state[k]) for k in straight_state)


def test_target_pointwise_without_m_and_w_is_a_clear_error(tmp_path):
    cbs = [WeightDecaySwitchOff(target="pointwise")]
    with pytest.raises(ConfigError, match="target='pointwise' is invalid.*Reparametrize"):
        trainer(tmp_path, cbs, max_epochs=1).fit(UserModule(), *loaders())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": "biases"}, r"target='biases' is invalid"),
        ({"target": "pointwise", "groups": ["decay"]}, r"target='pointwise' is invalid together"),
        ({"weight_decay": -1.0}, r"weight_decay=-1.0 is invalid"),
        ({"scale": -0.5}, r"scale=-0.5 is invalid: must be >= 0"),
    ],
)
def test_bad_target_arguments_fail_in_init(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        WeightDecaySchedule(**kwargs)
