"""The Hugging Face ``Trainer`` adapters (``sparsify.hf``) on a tiny GPT-2 on CPU, a few steps
each: GMP, prune at end, weight-decay switch-off, PILoT's α schedule, Sign-In's rescale."""

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from hf_models import tiny_gpt2, token_data  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from sparsify import ConfigError, prune_at_init, reparametrize, sparsity_report  # noqa: E402
from sparsify.hf import (  # noqa: E402
    MagnitudePruning,
    PILoT,
    PruneAtEnd,
    SignIn,
    WeightDecaySwitchOff,
)
from sparsify.reparam import pointwise_factors  # noqa: E402
from sparsify.schedules import CubicPruningSchedule  # noqa: E402
from sparsify.sign_flips import inner_scale  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS_PER_EPOCH = 4  # 64 sequences, batch 16


def dataset():
    inputs, _ = token_data()[:]
    return [{"input_ids": x, "labels": x} for x in inputs]


def train(tmp_path, model, callbacks, epochs=4, optimizers=(None, None), **kwargs):
    settings = {
        "num_train_epochs": epochs, "per_device_train_batch_size": 16, "learning_rate": 0.1,
        "optim": "sgd", "weight_decay": 1e-3, "logging_strategy": "epoch", "save_strategy": "no",
        "report_to": "none", "use_cpu": True, "disable_tqdm": True, "seed": 0,
        "dataloader_num_workers": 0, **kwargs,
    }  # fmt: skip
    args = TrainingArguments(output_dir=str(tmp_path), **settings)
    trainer = Trainer(
        model=model, args=args, train_dataset=dataset(), callbacks=callbacks,
        optimizers=optimizers,
    )  # fmt: skip
    trainer.train()
    return trainer


class Record(TrainerCallback):
    """Before every optimizer step: the sparsity of the model, each group's weight decay and
    learning rate, the mean inner scale."""

    def __init__(self):
        self.sparsity, self.decay, self.lr, self.epoch_start_scale = [], [], [], []

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kw):
        self.sparsity.append(sparsity_report(model)["global"])
        self.decay.append([g["weight_decay"] for g in optimizer.param_groups])
        self.lr.append([g["lr"] for g in optimizer.param_groups])

    def on_epoch_begin(self, args, state, control, model=None, **kw):
        self.epoch_start_scale.append(inner_scale(model))


def test_gmp_prunes_at_the_scheduled_steps_to_the_cubic_targets(tmp_path):
    model, record = tiny_gpt2(), Record()
    gmp = MagnitudePruning(0.8, start=0.25, end=0.75, frequency=0.125)
    train(tmp_path, model, [gmp, record], epochs=4)
    total = 4 * STEPS_PER_EPOCH
    schedule = CubicPruningSchedule(0.8, 0.0, 0.25, 0.75, 0.125)
    expected = [
        schedule.target(schedule.scheduled_time(step / total)) if step / total >= 0.25 else 0.0
        for step in range(total)
    ]
    assert record.sparsity == pytest.approx(expected, abs=1e-3)
    assert expected[-1] == 0.8 and len(set(expected)) == 5  # 0, new targets at 6, 8, 10, 12
    assert gmp.last_pruned == 0.75
    c_attn = model.transformer.h[0].attn.c_attn
    assert float((c_attn.weight == 0).float().mean()) > 0.3  # the Conv1D layers are pruned


def test_prune_at_end_fine_tunes_the_last_epoch_under_the_mask(tmp_path):
    model, record = tiny_gpt2(), Record()
    pruner = PruneAtEnd(0.7, finetune_epochs=1)
    train(tmp_path, model, [pruner, record], epochs=3)
    before, after = record.sparsity[: 2 * STEPS_PER_EPOCH], record.sparsity[2 * STEPS_PER_EPOCH :]
    assert all(s == 0 for s in before)
    assert after == pytest.approx([0.7] * STEPS_PER_EPOCH, abs=1e-3)
    assert pruner.pruned and sparsity_report(model)["global"] == pytest.approx(0.7, abs=1e-3)


def test_weight_decay_switch_off_on_the_pointwise_group_keeps_the_lr_schedule(tmp_path):
    model, record = tiny_gpt2(), Record()
    reparametrize(model)
    train(tmp_path, model, [WeightDecaySwitchOff(at=0.5, target="pointwise"), record], epochs=2)
    half = STEPS_PER_EPOCH
    # Trainer's groups: decayed, not decayed (biases, norms); m, w split off into a third.
    assert [d[2] for d in record.decay] == [1e-3] * half + [0.0] * half
    assert all(d[:2] == [1e-3, 0.0] for d in record.decay)
    assert all(len(set(lrs)) == 1 for lrs in record.lr)  # the linear lr decay covers m, w too
    assert record.lr[0][0] > record.lr[-1][0]


def test_pilot_grows_then_decays_alpha_on_exactly_m_and_w(tmp_path):
    model, record = tiny_gpt2(), Record()
    reparametrize(model)
    pilot = PILoT(alpha_init=1e-3, delta=2.0, l1_threshold=0.0)
    train(tmp_path, model, [pilot, record], epochs=4)
    # Epoch k = 1 (of k = 1 … 4) comes before T/2 = 2: α doubles after it; then it halves.
    assert pilot.history[:2] == pytest.approx([1e-3, 2e-3])
    assert pilot.history[3] == pytest.approx(pilot.history[2] / 2)
    seen = [record.decay[e * STEPS_PER_EPOCH][2] for e in range(4)]
    # the optimizer's m, w group got 2 α_t: the gradient of the paper's α_t (‖m‖² + ‖w‖²)
    assert seen == pytest.approx([2 * alpha for alpha in pilot.history])
    assert all(d[:2] == [1e-3, 0.0] for d in record.decay)  # the other groups kept theirs


def test_pilot_needs_the_metric_logged_every_epoch(tmp_path):
    model = tiny_gpt2()
    reparametrize(model)
    with pytest.raises(ConfigError, match="monitor='loss' was not logged during epoch 0"):
        train(tmp_path, model, [PILoT()], epochs=2, logging_strategy="no")


def test_sign_in_reparametrizes_before_the_optimizer_and_rescales_every_epoch(tmp_path):
    model, record = tiny_gpt2(), Record()
    prune_at_init(model, 0.8, "magnitude")
    signin = SignIn()
    trainer = train(tmp_path, model, [signin, record], epochs=3, weight_decay=0.05)
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    factors = list(pointwise_factors(model))
    assert len(factors) == 8 and all(id(m) in optimized for _, m, _ in factors)
    assert record.epoch_start_scale == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    scales = [m["signin/inner_scale"] for m in signin.measurements]
    assert all(s < 1.0 for s in scales)  # weight decay shrank β during each epoch
    assert sparsity_report(model)["global"] == pytest.approx(0.8, abs=1e-3)


def test_sign_in_refuses_an_optimizer_built_before_the_trainer(tmp_path):
    model = tiny_gpt2()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="SignIn is invalid with a Trainer given an optimizer"):
        train(tmp_path, model, [SignIn()], optimizers=(optimizer, None))
