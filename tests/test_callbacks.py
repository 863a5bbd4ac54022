import lightning as L
import pytest
import torch

from helpers import RecordGroupOption, UserModule, loaders, trainer
from sparsify import ConfigError, pointwise_factors, sparsity_report
from sparsify.callbacks import (
    PruneAtEnd,
    Reparametrize,
    WeightDecaySchedule,
    WeightDecaySwitchOff,
)

STEPS_PER_EPOCH = 6  # 96 samples, batch 16


def test_reparametrize_gives_the_users_optimizer_m_and_w(tmp_path):
    module = UserModule()
    trainer(tmp_path, [Reparametrize(beta=1.0)], max_epochs=1).fit(module, *loaders())
    factors = [p for _, m, w in pointwise_factors(module) for p in (m, w)]
    assert len(factors) == 4
    optimized = {id(p) for g in module.trainer.optimizers[0].param_groups for p in g["params"]}
    assert all(id(p) in optimized for p in factors)
    assert "net.0.weight" not in dict(module.named_parameters())


def test_switch_off_at_a_fraction_of_training(tmp_path):
    record = RecordGroupOption("weight_decay")
    cbs = [Reparametrize(), WeightDecaySwitchOff(at=0.5), record]
    trainer(tmp_path, cbs, max_epochs=4).fit(UserModule(weight_decay=1e-3), *loaders())
    seen = [wd for (wd,) in record.seen]
    assert len(seen) == 4 * STEPS_PER_EPOCH
    assert seen == [1e-3] * 12 + [0.0] * 12


def test_switch_off_at_an_epoch(tmp_path):
    record = RecordGroupOption("weight_decay")
    cbs = [WeightDecaySwitchOff(at=3, unit="epoch"), record]
    trainer(tmp_path, cbs, max_epochs=4).fit(UserModule(weight_decay=1e-3), *loaders())
    assert [wd for (wd,) in record.seen] == [1e-3] * 18 + [0.0] * 6


def test_named_group_that_does_not_exist_is_a_clear_error(tmp_path):
    cbs = [WeightDecaySwitchOff(groups=["pointwise"])]
    with pytest.raises(ConfigError, match=r"groups=\['pointwise'\] matched no optimizer"):
        trainer(tmp_path, cbs, max_epochs=1).fit(UserModule(), *loaders())


def test_resume_continues_the_weight_decay_schedule(tmp_path):
    def run(max_epochs, ckpt_path=None):
        record = RecordGroupOption("weight_decay")
        schedule = WeightDecaySchedule("linear", unit="epoch", end=4)
        t = trainer(tmp_path, [schedule, record], max_epochs=max_epochs)
        L.seed_everything(0)
        t.fit(UserModule(weight_decay=1e-2), *loaders(), ckpt_path=ckpt_path)
        return t, [wd for (wd,) in record.seen]

    first, _ = run(2)
    first.save_checkpoint(tmp_path / "mid.ckpt")
    _, resumed = run(4, ckpt_path=tmp_path / "mid.ckpt")
    _, straight = run(4)
    assert resumed == pytest.approx(straight[12:])
    assert resumed[0] == pytest.approx(1e-2 * (1 - 2 / 4))


def test_prune_at_end_reaches_the_target_and_fine_tunes_under_the_mask(tmp_path):
    module = UserModule()
    pruner = PruneAtEnd(0.8, finetune_epochs=2)
    trainer(tmp_path, [Reparametrize(), pruner], max_epochs=5).fit(module, *loaders())
    assert pruner.pruned
    n = 8 * 32 + 32 * 3
    assert sparsity_report(module)["global"] == 1 - round(0.2 * n) / n
    assert pruner.before is not None and pruner.after is not None
    unpruned = pruner.unpruned_state_dict
    assert sum(int((v == 0).sum()) for k, v in unpruned.items() if k.endswith("mask")) == 0


def test_prune_at_end_without_fine_tuning_prunes_when_training_ends(tmp_path):
    module = UserModule()
    pruner = PruneAtEnd(0.5, scope="layer")
    trainer(tmp_path, [pruner], max_epochs=2).fit(module, *loaders())
    assert sparsity_report(module)["layers"] == {
        "net.0": 0.5,
        "net.2": pytest.approx(0.5, abs=0.01),
    }


def test_fine_tuning_longer_than_training_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="finetune_epochs=3.*max_epochs=3"):
        trainer(tmp_path, [PruneAtEnd(0.5, finetune_epochs=3)], max_epochs=3).fit(
            UserModule(), *loaders()
        )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PruneAtEnd(1.0), r"sparsity=1.0 is invalid"),
        (lambda: PruneAtEnd(0.5, scope="rows"), r"scope='rows'"),
        (lambda: Reparametrize(beta=-0.5), r"beta=-0.5"),
        (lambda: WeightDecaySwitchOff(at=1.5), r"at=1.5.*\[0, 1\]"),
        (lambda: WeightDecaySwitchOff(unit="minutes"), r"unit='minutes'.*fraction, epoch, step"),
    ],
)
def test_bad_arguments_fail_in_init(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_masks_and_factors_restore_from_a_checkpoint(tmp_path):
    module = UserModule()
    t = trainer(tmp_path, [Reparametrize(), PruneAtEnd(0.7)], max_epochs=2)
    t.fit(module, *loaders())
    t.save_checkpoint(tmp_path / "pruned.ckpt")
    fresh = UserModule()
    t2 = trainer(tmp_path, [Reparametrize(), PruneAtEnd(0.7)], max_epochs=2)
    t2.validate(fresh, loaders()[1], ckpt_path=tmp_path / "pruned.ckpt", verbose=False)
    assert sparsity_report(fresh)["global"] == pytest.approx(0.7, abs=1 / 352)
    for (_, m1, w1), (_, m2, w2) in zip(pointwise_factors(module), pointwise_factors(fresh)):
        assert torch.equal(m1, m2) and torch.equal(w1, w2)
