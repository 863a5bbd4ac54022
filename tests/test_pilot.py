import lightning as L
import pytest
import torch

from helpers import RecordGroupOption, UserModule, loaders, trainer
from sparsify import ConfigError
from sparsify.callbacks import PILoT, PruneAtEnd, Reparametrize
from sparsify.callbacks.pilot import l1_outside_top
from sparsify.param_groups import pointwise_parameters


class RecordAlpha(L.Callback):
    """The α PILoT holds at the start of every epoch."""

    def __init__(self, pilot):
        self.pilot, self.seen = pilot, []

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen.append(self.pilot.alpha)


def test_adaptive_rule_on_a_scripted_sequence_of_accuracies_and_norms():
    pilot = PILoT(alpha_init=1.0, delta=2.0, l1_threshold=10.0, l1_threshold_relative=False)
    script = [  # (train accuracy, ‖m ⊙ w‖₁, α after the epoch): T = 10 epochs, k = 1 … 10
        (0.50, 20.0, 2.0),  # k = 1, the first epoch counts as improving: grow
        (0.60, 5.0, 1.0),  # improved but the norm is below K: shrink
        (0.55, 15.0, 0.5),  # accuracy fell: shrink
        (0.70, 10.0, 1.0),  # improved, norm = K (the paper's ≥ K), k = 4 < 5: grow
        (0.80, 20.0, 0.5),  # k = 5 is not < T/2 = 5: shrink (counting from 0 would grow)
        (0.90, 20.0, 0.25),
    ]
    for epoch, (accuracy, norm, alpha) in enumerate(script):
        assert pilot.update(accuracy, norm, epoch, total_epochs=10) == pytest.approx(alpha)


@pytest.mark.parametrize(
    "total, growing", [(4, [1]), (5, [1, 2]), (6, [1, 2]), (7, [1, 2, 3]), (1, [])]
)
def test_alpha_grows_only_at_the_papers_epochs_k_below_half_of_T(total, growing):
    """Mask in the Mirror (ICLR 2025), Algorithm 1: epochs k = 1 … T, α grows only while
    k < T/2 (here the accuracy always improves and the norm is above K)."""
    pilot = PILoT(alpha_init=1.0, delta=2.0, l1_threshold=0.0, l1_threshold_relative=False)
    grew = []
    for epoch in range(total):  # Lightning's epochs 0 … T − 1
        before = pilot.alpha
        pilot.update(0.1 * (epoch + 1), 1.0, epoch, total_epochs=total)
        if pilot.alpha > before:
            grew.append(epoch + 1)
    assert grew == growing


def test_a_four_epoch_run_grows_alpha_after_its_first_epoch_only(tmp_path):
    pilot = PILoT(alpha_init=0.01, delta=2.0, l1_threshold=0.0, l1_threshold_relative=False)
    alphas = RecordAlpha(pilot)
    trainer(tmp_path, [Reparametrize(), pilot, alphas], max_epochs=4).fit(
        UserModule(lr=0.01), *loaders()
    )
    # k = 1 < 2 may grow (the first epoch counts as improving); k = 2, 3, 4 shrink.
    assert alphas.seen == pytest.approx([0.01, 0.02, 0.01, 0.005])
    assert pilot.alpha == pytest.approx(0.0025)


def test_mode_min_counts_a_falling_loss_as_improvement():
    pilot = PILoT(
        alpha_init=1.0, delta=2.0, l1_threshold=0.0, l1_threshold_relative=False, mode="min"
    )
    assert [pilot.update(loss, 1.0, e, 10) for e, loss in enumerate([3.0, 2.0, 2.5])] == [2, 4, 2]


def test_relative_K_is_a_fraction_of_the_initial_norm(tmp_path):
    pilot = PILoT(l1_threshold=0.25, monitor="train/loss", mode="min")
    module = UserModule()
    trainer(tmp_path, [Reparametrize(), pilot], max_epochs=1).fit(module, *loaders())
    L.seed_everything(0)
    initial = UserModule()
    norm = sum(
        float(layer.weight.detach().abs().sum()) for layer in (initial.net[0], initial.net[2])
    )
    assert pilot.reference_norm == pytest.approx(norm, rel=1e-5)
    assert pilot.threshold == pytest.approx(0.25 * norm, rel=1e-5)


def halving_pilot() -> PILoT:
    """K beyond any norm: α never grows, it halves after every epoch."""
    return PILoT(
        alpha_init=0.01,
        delta=2.0,
        l1_threshold=1e9,
        l1_threshold_relative=False,
        monitor="train/loss",
    )


def test_exactly_m_and_w_get_the_papers_penalty_under_a_single_group_optimizer(tmp_path):
    # K beyond any norm: α never grows, it halves after every epoch. The paper's objective
    # f + α(‖m‖² + ‖w‖²) has gradient f' + 2αp: weight decay 2α, not α.
    pilot = halving_pilot()
    record, alphas = RecordGroupOption("weight_decay"), RecordAlpha(pilot)
    module = UserModule(lr=0.01, weight_decay=1e-3)
    t = trainer(tmp_path, [Reparametrize(), pilot, record, alphas], max_epochs=4)
    t.fit(module, *loaders())
    groups = t.optimizers[0].param_groups
    assert len(groups) == 2
    factors = {id(p) for p in pointwise_parameters(module)}
    assert {id(p) for p in groups[1]["params"]} == factors
    assert not factors & {id(p) for p in groups[0]["params"]}
    assert alphas.seen == pytest.approx([0.01, 0.005, 0.0025, 0.00125])
    steps_per_epoch = len(record.seen) // 4
    for step, (others, factors_decay) in enumerate(record.seen):
        assert others == 1e-3
        assert factors_decay == pytest.approx(2 * alphas.seen[step // steps_per_epoch])


def test_alpha_follows_a_fixed_schedule_of_the_epoch(tmp_path):
    pilot = PILoT(alpha_init=0.1, schedule="inverse_square")
    alphas = RecordAlpha(pilot)
    trainer(tmp_path, [Reparametrize(), pilot, alphas], max_epochs=3).fit(UserModule(), *loaders())
    assert alphas.seen == pytest.approx([0.1, 0.1 / 4, 0.1 / 9])


def test_resume_restores_alpha_and_the_reference_norm(tmp_path):
    def run(max_epochs, ckpt_path=None):
        pilot = halving_pilot()
        alphas = RecordAlpha(pilot)
        t = trainer(tmp_path, [Reparametrize(), pilot, alphas], max_epochs=max_epochs)
        L.seed_everything(0)
        t.fit(UserModule(lr=0.01), *loaders(), ckpt_path=ckpt_path)
        return t, pilot, alphas.seen

    first, half, _ = run(2)
    first.save_checkpoint(tmp_path / "mid.ckpt")
    _, resumed, resumed_alphas = run(4, ckpt_path=tmp_path / "mid.ckpt")
    _, straight, straight_alphas = run(4)
    assert resumed_alphas == pytest.approx(straight_alphas[2:]) == [0.0025, 0.00125]
    assert resumed.reference_norm == pytest.approx(half.reference_norm)
    assert resumed.reference_norm == pytest.approx(straight.reference_norm)


def test_missing_metric_and_missing_factors_are_clear_errors(tmp_path):
    named = PILoT(monitor="train/acc")
    with pytest.raises(ConfigError, match="monitor='train/acc' is invalid: no such metric"):
        trainer(tmp_path, [Reparametrize(), named], max_epochs=3).fit(UserModule(), *loaders())
    assert named.last is None  # it failed at the end of the first epoch
    with pytest.raises(ConfigError, match="add the Reparametrize callback"):
        trainer(tmp_path, [PILoT()], max_epochs=1).fit(UserModule(), *loaders())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha_init": 0.0}, "alpha_init=0.0 is invalid"),
        ({"delta": 1.0}, "delta=1.0 is invalid"),
        ({"l1_threshold": -1.0}, "l1_threshold=-1.0 is invalid"),
        ({"mode": "up"}, "mode='up' is invalid"),
        ({"schedule": "sometimes"}, "schedule='sometimes' is invalid"),
        ({"outside_top_tolerance": 1.0}, "outside_top_tolerance=1.0 is invalid"),
        ({"sparsity": 1.5}, "sparsity=1.5 is invalid"),
    ],
)
def test_bad_arguments_fail_in_init(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PILoT(**kwargs)


class RecordEpochLoss(L.Callback):
    """The mean of the losses training_step returned in each epoch."""

    def __init__(self):
        self.losses, self.means = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))

    def on_train_epoch_end(self, trainer, pl_module):
        self.means.append(sum(self.losses) / len(self.losses))
        self.losses = []


def test_without_a_logged_accuracy_the_rule_follows_the_mean_training_loss(tmp_path, caplog):
    """The user's module logs no train/acc: PILoT() compares the epochs' mean training losses
    (lower is better) and says so once."""
    pilot, record = (
        PILoT(alpha_init=0.01, delta=2.0, l1_threshold=0.0, l1_threshold_relative=False),
        RecordEpochLoss(),
    )
    alphas = RecordAlpha(pilot)
    with caplog.at_level("INFO"):
        trainer(tmp_path, [Reparametrize(), pilot, record, alphas], max_epochs=4).fit(
            UserModule(lr=0.05), *loaders()
        )
    assert pilot.follows_loss and pilot.last == pytest.approx(record.means[-1])
    expected = PILoT(
        alpha_init=0.01, delta=2.0, l1_threshold=0.0, l1_threshold_relative=False, mode="min"
    )
    for epoch, mean in enumerate(record.means[:-1]):
        assert alphas.seen[epoch + 1] == pytest.approx(expected.update(mean, 1.0, epoch, 4))
    assert caplog.text.count("follows the epoch's mean training loss") == 1


def test_l1_outside_top_is_the_share_of_the_l1_mass_pruning_to_s_removes():
    magnitudes = torch.tensor([8.0, 4.0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # sum 16
    assert l1_outside_top(magnitudes, 0.9) == pytest.approx(1 - 8 / 16)  # keeps 1 of 10
    assert l1_outside_top(magnitudes, 0.8) == pytest.approx(1 - 12 / 16)
    assert l1_outside_top(magnitudes, 0.5) == pytest.approx(0.0)  # already 50 % sparse
    assert l1_outside_top(torch.ones(100), 0.99) == pytest.approx(0.99)  # nothing stands out
    assert l1_outside_top(torch.zeros(10), 0.9) == 0.0


def test_outside_top_tolerance_grows_alpha_while_the_l1_mass_outside_the_top_is_above_it():
    # K would stop growth at every step here (norm 1 < K = 10): the tolerance rule ignores it.
    pilot = PILoT(
        alpha_init=1.0,
        delta=2.0,
        l1_threshold=10.0,
        l1_threshold_relative=False,
        outside_top_tolerance=0.1,
    )
    script = [  # (train accuracy, L1 share outside the top (1 − s), α after the epoch): T = 10
        (0.50, 0.60, 2.0),  # the first epoch counts as improving, 0.60 > 0.1: grow
        (0.60, 0.30, 4.0),  # improved, 0.30 > 0.1: grow
        (0.70, 0.05, 2.0),  # improved but sparse enough (0.05 < 0.1): shrink
        (0.80, 0.20, 4.0),  # improved, 0.20 > 0.1, k = 4 < 5: grow
        (0.90, 0.20, 2.0),  # k = 5 is not < T/2: shrink
        (0.85, 0.20, 1.0),  # accuracy fell: shrink
    ]
    for epoch, (accuracy, outside, alpha) in enumerate(script):
        assert pilot.update(accuracy, 1.0, epoch, 10, outside_top=outside) == pytest.approx(alpha)


class RecordLogged(L.Callback):
    """What PILoT logged at the end of each epoch, and the model's θ at that moment."""

    def __init__(self):
        self.outside, self.magnitudes = [], []

    def on_train_epoch_end(self, trainer, pl_module):
        self.outside.append(float(trainer.callback_metrics["pilot/l1_outside_top"]))
        net = pl_module.net
        self.magnitudes.append(torch.cat([net[i].weight.detach().abs().flatten() for i in (0, 2)]))


def test_the_logged_outside_share_is_at_the_pruners_target_and_drives_the_tolerance_rule(
    tmp_path,
):
    # K beyond any norm: the paper's rule would shrink α; the tolerance rule grows it.
    pilot = PILoT(
        alpha_init=0.01,
        delta=2.0,
        l1_threshold=1e9,
        l1_threshold_relative=False,
        monitor="train/loss",
        mode="min",
        outside_top_tolerance=0.0,
    )
    record, alphas = RecordLogged(), RecordAlpha(pilot)
    callbacks = [Reparametrize(), pilot, record, alphas, PruneAtEnd(0.75)]
    # T = 3: α may grow after epoch k = 1 < T/2 only.
    trainer(tmp_path, callbacks, max_epochs=3).fit(UserModule(lr=0.05), *loaders())
    assert pilot.target_sparsity == 0.75
    for logged, magnitudes in zip(record.outside, record.magnitudes):
        kept = torch.topk(magnitudes, round(0.25 * magnitudes.numel())).values.sum()
        assert logged == pytest.approx(float(1 - kept / magnitudes.sum()), rel=1e-5)
    assert record.outside[0] > 0  # a dense θ has mass outside its top quarter: α grew
    assert alphas.seen[1] == pytest.approx(0.02)


def test_outside_top_tolerance_without_a_target_sparsity_is_a_clear_error(tmp_path):
    pilot = PILoT(outside_top_tolerance=0.1, monitor="train/loss", mode="min")
    with pytest.raises(ConfigError, match="outside_top_tolerance=0.1 needs a target sparsity"):
        trainer(tmp_path, [Reparametrize(), pilot], max_epochs=1).fit(UserModule(), *loaders())
