"""The mask methods' Lightning callbacks and Hugging Face ``TrainerCallback`` s are adapters of one
rule each (``sparsify.rules``): the same arguments on the same batches give the same masks, the
same sparsity and the same weights."""

import lightning as L
import pytest
import torch
from frameworks import (
    LR,
    STEPS_PER_EPOCH,
    LitNet,
    Net,
    assert_same_weights,
    train_hf,
    train_lightning,
)
from transformers import TrainerCallback

from sparsify import callbacks, hf
from sparsify.errors import ConfigError
from sparsify.masks import sparsity_report
from sparsify.reparam import layer_masks

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same_masks(a: torch.nn.Module, b: torch.nn.Module) -> dict:
    masks_a, masks_b = layer_masks(a), layer_masks(b)
    assert masks_a.keys() == masks_b.keys() and masks_a
    for name in masks_a:
        assert torch.equal(masks_a[name], masks_b[name]), name
    assert sparsity_report(a) == sparsity_report(b)
    return masks_a


class LightningSeed(L.Callback):
    def on_train_start(self, trainer, pl_module):
        torch.manual_seed(1)


class TrainerSeed(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        torch.manual_seed(1)


def train_both(tmp_path, make_callback, epochs: int = 2, linear: bool = False) -> tuple:
    """Each framework from the same initialization, and from the same random state when training
    starts (the two frameworks draw differently before); ``linear``: the learning rate decays
    linearly to 0 over the run's steps (the ``Trainer``'s ``"linear"`` schedule)."""
    nets = Net(), Net()
    lightning, trainer = make_callback(callbacks), make_callback(hf)
    lightning_lr, trainer_lr = LightningLR(), TrainerLR()
    train_lightning(
        nets[0],
        [LightningSeed(), lightning, lightning_lr],
        epochs,
        tmp_path,
        module=LinearDecayNet if linear else LitNet,
    )
    schedule = {"lr_scheduler_type": "linear"} if linear else {}
    train_hf(nets[1], [TrainerSeed(), trainer, trainer_lr], epochs, tmp_path, **schedule)
    assert [len(rates) for rates in lightning_lr.lrs] == [len(rates) for rates in trainer_lr.lrs]
    flat = [[rate for rates in run.lrs for rate in rates] for run in (lightning_lr, trainer_lr)]
    assert flat[0] == pytest.approx(flat[1], rel=1e-6)
    return nets, lightning, trainer, lightning_lr.lrs


class LightningLR(L.Callback):
    """The learning rate of every param group before every optimizer step."""

    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs += [[group["lr"] for group in optimizer.param_groups]]


class TrainerLR(TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs += [[group["lr"] for group in optimizer.param_groups]]


class LinearDecayNet(LitNet):
    """The ``Trainer``'s ``"linear"`` schedule (no warm-up), stepped every optimizer step."""

    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        total = self.trainer.estimated_stepping_batches
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda t: max(0.0, float(total - t) / float(max(1, total)))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


GRASP = {"score": "grasp", "temperature": 1.0, "samples_per_class": None}


@pytest.mark.parametrize(
    "options",
    [
        {"score": "random"},
        {"score": "magnitude", "distribution": "erk"},
        {"score": "snip", "num_batches": 2},
        {**GRASP, "num_batches": 2},
        {"score": "snip", "invert": True, "shuffle": True, "reinitialize": True},
    ],
    ids=["random", "magnitude", "snip", "grasp", "sanity-checks"],
)
def test_prune_at_init(tmp_path, options):
    (a, b), lightning, trainer, _ = train_both(tmp_path, lambda m: m.PruneAtInit(0.75, **options))
    masks = assert_same_masks(a, b)
    assert sparsity_report(a)["global"] == pytest.approx(0.75, abs=0.01)
    assert lightning.done and trainer.done
    assert trainer.logged[0]["pai/sparsity"] == sparsity_report(b)["global"]
    for name, mask in masks.items():  # the pruned weights stayed exactly 0
        assert not b.get_submodule(name).weight[mask == 0].any()
    assert_same_weights(a, b)


def test_prune_at_init_scores_differ_by_data(tmp_path):
    """SNIP and magnitude choose different masks here, so the agreement above is not trivial."""
    snip, magnitude = Net(), Net()
    train_hf(snip, [hf.PruneAtInit(0.75, score="snip")], 1, tmp_path)
    train_hf(magnitude, [hf.PruneAtInit(0.75, score="magnitude")], 1, tmp_path)
    assert any(
        not torch.equal(x, y)
        for x, y in zip(layer_masks(snip).values(), layer_masks(magnitude).values())
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"score": "synflow"}, "score='synflow' is invalid in sparsify.hf.PruneAtInit"),
        ({"score": "grasp", "samples_per_class": None}, "temperature=200.0 is invalid"),
        ({"score": "grasp", "temperature": 1.0}, "samples_per_class=10 is invalid"),
        ({"score": "snip", "loss_fn": torch.nn.functional.mse_loss}, "loss_fn=<function"),
    ],
)
def test_prune_at_init_options_the_trainer_cannot_give_are_refused(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        train_hf(Net(), [hf.PruneAtInit(0.5, **options)], 1, tmp_path)
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").iterdir())


@pytest.mark.parametrize("threshold_weight_decay", [0.05, None], ids=["separate", "coupled"])
def test_soft_threshold_reparametrization(tmp_path, threshold_weight_decay):
    options = {"s_init": -2.0, "threshold_weight_decay": threshold_weight_decay}
    soft = train_both(
        tmp_path, lambda m: m.SoftThresholdReparametrization(**options, harden_at_end=False)
    )
    (a, b), _, trainer, _ = soft
    thresholds = [(n, p) for n, p in a.named_parameters() if n.endswith("threshold")]
    assert len(thresholds) == 2
    assert_same_weights(a, b)
    assert [entry["step"] for entry in trainer.logged if "str/sparsity" in entry] == [4, 8]
    (a, b), _, _, _ = train_both(tmp_path, lambda m: m.SoftThresholdReparametrization(**options))
    assert_same_masks(a, b)
    assert 0.1 < sparsity_report(a)["global"] < 0.9
    assert not any(n.endswith("threshold") for n, _ in b.named_parameters())  # hardened
    assert_same_weights(a, b)


def test_soft_threshold_decay_reaches_the_thresholds(tmp_path):
    """The threshold decay moves s under both adapters (so the agreement above covers it)."""
    kept, decayed = Net(), Net()
    common = {"s_init": -2.0, "harden_at_end": False}
    train_hf(
        kept, [hf.SoftThresholdReparametrization(threshold_weight_decay=0.0, **common)], 1, tmp_path
    )
    train_hf(
        decayed,
        [hf.SoftThresholdReparametrization(threshold_weight_decay=1.0, **common)],
        1,
        tmp_path,
    )
    s = [p for n, p in kept.named_parameters() if n.endswith("threshold")]
    s_decayed = [p for n, p in decayed.named_parameters() if n.endswith("threshold")]
    assert all(not torch.equal(x, y) for x, y in zip(s, s_decayed))


CS = {"penalty": 0.005, "s_init": 0.05, "temperature_final": 50.0, "rounds": 2}
TICKET = {"ticket": 0.34, "rewind": 0.17}  # 6 epochs: rounds at 0 and 2, ticket at 4, rewind 1


@pytest.mark.parametrize(
    "options, rounds, phase_epochs",
    [
        ({**TICKET}, [0, 0, 1, 1, 1, 1], 2),
        # the folded ticket has no scores left to log
        ({**TICKET, "fold_scale": True, "restart_schedule": False}, [0, 0, 1, 1], None),
        ({"harden_at_end": False}, [0, 0, 0, 1, 1, 1], 3),
    ],
    ids=["ticket", "folded-one-schedule", "soft"],
)
def test_continuous_sparsification(tmp_path, options, rounds, phase_epochs):
    (a, b), _, trainer, lrs = train_both(
        tmp_path, lambda m: m.ContinuousSparsification(**CS, **options), epochs=6, linear=True
    )
    assert_same_weights(a, b)
    if options.get("harden_at_end", True):
        assert_same_masks(a, b)
        assert 0.05 < sparsity_report(a)["global"] < 0.95
    logged = [entry for entry in trainer.logged if "cs/round" in entry]
    assert [entry["cs/round"] for entry in logged] == rounds
    assert logged[0]["cs/temperature"] == 1.0 and logged[1]["cs/temperature"] > 1.0
    steps = 6 * STEPS_PER_EPOCH
    if phase_epochs:  # every phase replays the whole schedule, 6 / phase_epochs times as fast
        phase = phase_epochs * STEPS_PER_EPOCH
        positions = [t % phase * 6 // phase_epochs for t in range(steps)]
    else:
        positions = list(range(steps))
    assert [rates[0] for rates in lrs] == pytest.approx(
        [LR * (steps - p) / steps for p in positions]
    )


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"max_steps": 10}, "max_steps=10 is invalid for ContinuousSparsification"),
        ({"num_train_epochs": 2.5}, "num_train_epochs=2.5 is invalid"),
        ({"num_train_epochs": 2}, "ticket=0.34 is invalid with num_train_epochs=2"),
    ],
)
def test_continuous_sparsification_needs_whole_epochs(tmp_path, settings, message):
    callback = hf.ContinuousSparsification(**CS, **TICKET)
    with pytest.raises(ConfigError, match=message):
        train_hf(Net(), [callback], 6, tmp_path, **settings)
