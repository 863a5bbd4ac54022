import lightning as L
import pytest
import torch

from helpers import UserModule, loaders, trainer
from sparsify import ConfigError, pointwise_factors, sparsity_report
from sparsify.callbacks import Reparametrize
from sparsify.callbacks.magnitude_pruning import MagnitudePruning
from sparsify.schedules import cubic_sparsity

STEPS_PER_EPOCH = 6  # 96 samples, batch 16
N_WEIGHTS = 8 * 32 + 32 * 3


def reached(sparsity: float, n: int = N_WEIGHTS) -> float:
    """The global sparsity magnitude pruning gives: round((1 − s) · n) weights kept."""
    return 1 - round((1 - sparsity) * n) / n


class RecordSparsity(L.Callback):
    """Global sparsity of θ as the forward pass of every step sees it, and GMP's logged target."""

    def __init__(self):
        self.seen, self.logged, self.steps, self.zeros = [], [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.steps.append(trainer.global_step)
        self.seen.append(sparsity_report(pl_module)["global"])
        self.zeros.append(
            torch.cat(
                [(p == 0).flatten() for p in (pl_module.net[0].weight, pl_module.net[2].weight)]
            )
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.logged.append(float(trainer.callback_metrics["gmp/sparsity"]))


def test_sparsity_follows_the_cubic_schedule_and_reaches_the_target_at_the_end_step(tmp_path):
    gmp = MagnitudePruning(0.8, initial_sparsity=0.2, start=2, end=14, frequency=4, unit="step")
    record = RecordSparsity()
    module = UserModule()
    trainer(tmp_path, [gmp, record], max_epochs=3).fit(module, *loaders())

    def expected(step):  # pruned at steps 2, 6, 10, 14 to the cubic value of that step
        if step < 2:
            return 0.0
        return reached(cubic_sparsity(min(14, 2 + (step - 2) // 4 * 4), 2, 14, 0.2, 0.8))

    assert record.steps == list(range(3 * STEPS_PER_EPOCH))
    assert record.seen == pytest.approx([expected(t) for t in record.steps])
    assert record.seen[13] < reached(0.8) == record.seen[14] == record.seen[-1]
    assert record.logged[14:] == pytest.approx([0.8] * 4)
    assert 0.2 < record.seen[6] < record.seen[10] < 0.8  # strictly between the end points


def test_fraction_unit_reaches_the_target_at_the_first_step_past_end(tmp_path):
    record = RecordSparsity()
    gmp = MagnitudePruning(0.7, start=0.0, end=0.5, frequency=0.125)
    trainer(tmp_path, [gmp, record], max_epochs=4).fit(UserModule(), *loaders())
    end_step = 4 * STEPS_PER_EPOCH // 2
    assert record.seen[end_step - 1] < reached(0.7) == record.seen[end_step] == record.seen[-1]
    assert len(set(record.seen)) == 5  # 0 and the targets at 1/8, 2/8, 3/8, 4/8 of training


def test_layer_scope_on_a_reparametrized_model(tmp_path):
    module = UserModule()
    gmp = MagnitudePruning(0.75, start=0, end=2, frequency=1, unit="epoch", scope="layer")
    trainer(tmp_path, [Reparametrize(), gmp], max_epochs=3).fit(module, *loaders())
    assert sparsity_report(module)["layers"] == {
        "net.0": 0.75,
        "net.2": pytest.approx(0.75, abs=1 / 96),
    }
    assert len(list(pointwise_factors(module))) == 2  # still m ⊙ w, now masked


def test_resume_prunes_at_the_same_times_as_an_uninterrupted_run(tmp_path):
    class RecordPrunings(L.Callback):
        def __init__(self):
            self.steps, self.last = [], None

        def on_train_start(self, trainer, pl_module):
            self.last = sparsity_report(pl_module)["global"]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            sparsity = sparsity_report(pl_module)["global"]
            if sparsity != self.last:
                self.steps.append(trainer.global_step - 1)
            self.last = sparsity

    class StopAfterTwoEpochs(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            trainer.should_stop = trainer.current_epoch == 1

    def run(ckpt_path=None, interrupt=False):
        record, gmp = (
            RecordPrunings(),
            MagnitudePruning(0.8, start=0, end=20, frequency=5, unit="step"),
        )
        stop = [StopAfterTwoEpochs()] if interrupt else []
        t = trainer(tmp_path, [gmp, record, *stop], max_epochs=4)
        t.fit(UserModule(), *loaders(), ckpt_path=ckpt_path)
        return t, gmp, record.steps

    first, _, _ = run(interrupt=True)  # stops at step 12, last pruned at step 10
    first.save_checkpoint(tmp_path / "mid.ckpt")
    _, resumed, steps = run(ckpt_path=tmp_path / "mid.ckpt")
    _, _, straight = run()
    assert straight == [5, 10, 15, 20]
    assert steps == [15, 20]  # nothing re-pruned at step 12
    assert resumed.last_pruned == 20 and resumed.sparsity == 0.8


def test_end_after_the_last_epoch_is_refused(tmp_path):
    gmp = MagnitudePruning(0.5, start=0, end=3, frequency=1, unit="epoch")
    with pytest.raises(ConfigError, match="end=3 is invalid with unit='epoch' and max_epochs=3"):
        trainer(tmp_path, [gmp], max_epochs=3).fit(UserModule(), *loaders())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"final_sparsity": 1.0}, r"sparsity=1.0 is invalid"),
        ({"final_sparsity": 0.5, "initial_sparsity": 0.6}, r"initial_sparsity=0.6.*<= final"),
        ({"start": 0.5, "end": 0.5}, r"start=0.5, end=0.5 is invalid"),
        ({"end": 2.0}, r"end=2.0 is invalid with unit='fraction'"),
        ({"frequency": 0}, r"frequency=0 is invalid"),
        ({"unit": "minutes"}, r"unit='minutes'"),
        ({"scope": "rows"}, r"scope='rows'"),
    ],
)
def test_bad_arguments_fail_in_init(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MagnitudePruning(**kwargs)


def test_pruned_weights_are_exact_zeros_and_stay_pruned(tmp_path):
    module, record = UserModule(), RecordSparsity()
    gmp = MagnitudePruning(0.9, start=0, end=12, frequency=3, unit="step")
    trainer(tmp_path, [gmp, record], max_epochs=3).fit(module, *loaders())
    for before, after in zip(record.zeros, record.zeros[1:]):
        assert torch.all(after >= before)  # a pruned weight never comes back
    for layer in (module.net[0], module.net[2]):
        mask = layer.parametrizations.weight[0].mask
        assert torch.equal(layer.weight == 0, mask == 0)
