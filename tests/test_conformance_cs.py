"""Continuous sparsification against the authors' algorithm, re-derived here in plain PyTorch.

Reference: lolemacs/continuous-sparsification, ``main.py`` (the training protocol: rounds,
temperature schedule, penalty, optimizers, learning-rate schedule, clamp, rewind and ticket) and
``models/layers.py`` (``SoftMaskedConv2d``: mask = σ(τ s)/σ(s₀), in the ticket 1[s > 0]/σ(s₀);
``prune``, ``checkpoint``, ``rewind_weights``).

What the reference does, in our words: each masked weight is used as w · σ(τ s) / σ(s₀). The
loss is the task loss plus λ times the sum of those scaled soft masks. The weights (and every
other parameter) are stepped by one SGD with weight decay, the scores by a second SGD with the
same learning rate and momentum and no weight decay; both keep their state from round to round.
A round has E epochs; τ starts at 1 and is multiplied by τ_final^(1/(E − 1)) at the start of
every later epoch, and the learning rate of both optimizers is set at the start of every epoch
from the epoch *of the round* (``adjust_learning_rate``), so the schedule starts again with each
round. At the start of epoch k of the first round all non-score state is saved. After every
round but the last, τ goes back to 1 and then the scores are clamped, s ← min(τ s, s₀) with that
τ = 1. Finally the weights are rewound to the saved state, the mask becomes 1[s > 0] / σ(s₀) (the
factor outside the trained weights), and the weights train under it for E more epochs with a
new optimizer (no momentum carried over) and the learning-rate schedule from its start again.

Both sides here use the user's plain SGD (momentum 0.9, no Nesterov, weight decay 1e-3), a
learning rate × 0.1 for the second epoch of every two-epoch phase, and the same batches in the
same order, so the states must agree to float rounding. On our side the schedule is the module's
own, × 0.1 from epoch 3 of 6, which CS replays over each phase of two epochs.
"""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from run_helpers import CrashInEpoch
from torch.utils.data import DataLoader, TensorDataset

from helpers import RecordGroupOption, UserModule, blobs, trainer
from sparsify.callbacks import ContinuousSparsification
from sparsify.reparam import layer_masks
from sparsify.soft_masks import SigmoidMask, soft_masks

LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-3
PENALTY, S0, FINAL_TEMPERATURE = 0.003, 0.0, 50.0
MAX_EPOCHS, ROUNDS, TICKET, REWIND = 6, 2, 1 / 3, 0.2  # rounds of epochs 0-1 and 2-3, ticket 4-5
EPOCHS_PER_ROUND, REWIND_EPOCH, TICKET_EPOCHS = 2, 1, 2
LAYERS = ("net.0", "net.2")


def loader():
    x, y = blobs(64)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)


class Record(L.Callback):
    """The scores after the last search epoch, θ, biases and optimizer state as the ticket starts
    (this callback runs after CS's own epoch-start hook), θ after the ticket's first step, and
    the learning rate of every epoch."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == ROUNDS * EPOCHS_PER_ROUND - 1:
            self.scores = {n: s.scores.detach().clone() for n, s in soft_masks(pl_module)}

    def __init__(self):
        self.lrs = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        if trainer.current_epoch == ROUNDS * EPOCHS_PER_ROUND:
            net = pl_module.net
            self.theta = {n: net.get_submodule(n[4:]).weight.detach().clone() for n in LAYERS}
            self.bias = {n: net.get_submodule(n[4:]).bias.detach().clone() for n in LAYERS}
            self.optimizer_state = len(trainer.optimizers[0].state)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == ROUNDS * EPOCHS_PER_ROUND and batch_idx == 0:
            net = pl_module.net
            self.first_ticket_step = {
                n: net.get_submodule(n[4:]).weight.detach().clone() for n in LAYERS
            }


class ScheduledModule(UserModule):
    """The user's module with its own learning-rate schedule: × 0.1 from epoch 3 of 6."""

    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [3], 0.1)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }


def phase_lr(epoch: int) -> float:
    """The reference's ``adjust_learning_rate`` at epoch ``epoch`` of a round (or the ticket) of
    two epochs, with the drop × 0.1 at its second epoch."""
    return LR * (0.1 if epoch >= 1 else 1.0)


def reference(net: torch.nn.Sequential, data: list) -> dict:
    """The reference protocol on a copy of ``net`` (Linear, ReLU, Linear), with tensors."""
    weights = [net[i].weight.detach().clone().requires_grad_() for i in (0, 2)]
    biases = [net[i].bias.detach().clone().requires_grad_() for i in (0, 2)]
    scores = [torch.full_like(w, S0, requires_grad=True) for w in weights]
    scale = 1 / torch.sigmoid(torch.tensor(S0))

    def loss_of(x, y, layer_masks):
        hidden = F.relu(F.linear(x, weights[0] * layer_masks[0], biases[0]))
        return F.cross_entropy(F.linear(hidden, weights[1] * layer_masks[1], biases[1]), y)

    def set_lr(optimizers, epoch):
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = phase_lr(epoch)

    weight_opt = torch.optim.SGD(
        weights + biases, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )
    score_opt = torch.optim.SGD(scores, lr=LR, momentum=MOMENTUM)
    growth = FINAL_TEMPERATURE ** (1 / (EPOCHS_PER_ROUND - 1))
    for round_index in range(ROUNDS):
        temperature = 1.0
        for epoch in range(EPOCHS_PER_ROUND):
            if epoch > 0:
                temperature *= growth
            if round_index == 0 and epoch == REWIND_EPOCH:
                saved = [t.detach().clone() for t in weights + biases]
            set_lr([weight_opt, score_opt], epoch)
            for x, y in data:
                weight_opt.zero_grad()
                score_opt.zero_grad()
                soft = [scale * torch.sigmoid(temperature * s) for s in scores]
                loss = loss_of(x, y, soft) + PENALTY * sum(m.sum() for m in soft)
                loss.backward()
                weight_opt.step()
                score_opt.step()
        if round_index < ROUNDS - 1:
            temperature = 1.0
            with torch.no_grad():
                for s in scores:
                    s.copy_(torch.clamp(temperature * s, max=S0))
    searched = [s.detach().clone() for s in scores]
    with torch.no_grad():
        for tensor, value in zip(weights + biases, saved):
            tensor.copy_(value)
    binary = [(s > 0).float() for s in searched]
    ticket_start = [(w * scale * b).detach().clone() for w, b in zip(weights, binary)]
    ticket_bias = [b.detach().clone() for b in biases]
    ticket_opt = torch.optim.SGD(
        weights + biases, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    )
    hard = [scale * b for b in binary]
    for epoch in range(TICKET_EPOCHS):
        set_lr([ticket_opt], epoch)
        for x, y in data:
            ticket_opt.zero_grad()
            loss_of(x, y, hard).backward()
            ticket_opt.step()
    return {
        "scores": searched,
        "theta": ticket_start,
        "bias": ticket_bias,
        "masks": binary,
        "final_theta": [(w * m).detach().clone() for w, m in zip(weights, hard)],
        "final_bias": [b.detach().clone() for b in biases],
    }


def run_cs(tmp_path, module, data, **options) -> Record:
    cs = ContinuousSparsification(
        penalty=PENALTY,
        s_init=S0,
        temperature_final=FINAL_TEMPERATURE,
        rounds=ROUNDS,
        ticket=TICKET,
        rewind=REWIND,
        **options,
    )
    assert cs.schedule(MAX_EPOCHS) == ([0, 2], 4, REWIND_EPOCH)
    record = Record()
    run = trainer(tmp_path, [cs, record], max_epochs=MAX_EPOCHS, num_sanity_val_steps=0)
    run.fit(module, data)
    return record


def final_theta(module) -> list[torch.Tensor]:
    return [module.net.get_submodule(n[4:]).weight.detach() for n in LAYERS]


def test_cs_rounds_rewind_and_ticket_match_the_reference(tmp_path):
    data = loader()
    module = ScheduledModule(lr=LR, weight_decay=WEIGHT_DECAY)
    expected = reference(module.net, list(data))
    record = run_cs(tmp_path, module, data)
    for i, name in enumerate(LAYERS):
        torch.testing.assert_close(record.scores[name], expected["scores"][i], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(record.theta[name], expected["theta"][i], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(record.bias[name], expected["bias"][i], atol=1e-6, rtol=1e-5)
        assert torch.equal(layer_masks(module)[name], expected["masks"][i])
        # The ticket trained to the end: steps on θ as large as the reference's.
        theta = final_theta(module)[i]
        torch.testing.assert_close(theta, expected["final_theta"][i], atol=1e-5, rtol=1e-4)
        bias = module.net.get_submodule(name[4:]).bias.detach()
        torch.testing.assert_close(bias, expected["final_bias"][i], atol=1e-5, rtol=1e-4)
    assert record.optimizer_state == 0  # fresh momentum for the ticket
    assert record.lrs == [phase_lr(e % 2) for e in range(MAX_EPOCHS)]
    learned = sum(int(m.sum()) for m in expected["masks"]) / sum(
        m.numel() for m in expected["masks"]
    )
    assert 0.05 < learned < 0.95, learned  # the penalty has pruned, but not everything
    assert not list(soft_masks(module, SigmoidMask))


def test_the_reference_ticket_steps_theta_four_times_as_far_as_the_folded_scale(tmp_path):
    """With 1/σ(s₀) outside w (the reference; 2 at s₀ = 0) the gradient step on θ = 2 w is 4
    times the step with the factor folded into the trained weight (``fold_scale=True``); weight
    decay acts on θ alike. Both runs use the one schedule (``restart_schedule=False``: × 0.1 from
    epoch 3 of the six) and are the same up to the ticket."""
    runs = {}
    for fold in (False, True):
        torch.manual_seed(0)
        module = ScheduledModule(lr=LR, weight_decay=WEIGHT_DECAY)
        record = run_cs(
            tmp_path / str(fold), module, loader(), restart_schedule=False, fold_scale=fold
        )
        assert record.lrs == [LR] * 3 + [LR * 0.1] * 3
        runs[fold] = record
    lr = LR * 0.1
    for name in LAYERS:
        start = runs[False].theta[name]
        assert torch.equal(runs[True].theta[name], start)
        # θ₁ − θ₀ = −lr (c² g + wd θ₀): c² = 4 outside, 1 folded
        steps = {
            f: runs[f].first_ticket_step[name] - start + lr * WEIGHT_DECAY * start for f in runs
        }
        assert steps[False].abs().max() > 0
        torch.testing.assert_close(steps[False], 4 * steps[True], atol=1e-7, rtol=1e-4)


class LinearDecayModule(UserModule):
    """A learning rate decaying linearly to 0 over the run's steps, stepped every step."""

    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        total = self.trainer.estimated_stepping_batches
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1 - t / total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def test_each_round_and_the_ticket_replay_a_per_step_schedule(tmp_path):
    """6 epochs of 4 steps, phases of 2 epochs (8 steps) laid on a schedule of 24 steps: at step
    t of a phase the schedule stands at ⌊t · 6 / 2⌋, for the weights and the scores alike."""
    record = RecordGroupOption("lr")
    cs = ContinuousSparsification(rounds=ROUNDS, ticket=TICKET, rewind=REWIND)
    trainer(tmp_path, [cs, record], max_epochs=MAX_EPOCHS, num_sanity_val_steps=0).fit(
        LinearDecayModule(lr=LR), loader()
    )
    expected = [LR * (1 - 3 * (t % 8) / 24) for t in range(24)]
    assert [lrs[0] for lrs in record.seen] == pytest.approx(expected)
    assert all(len(set(lrs)) == 1 for lrs in record.seen)  # the scores' group alike


def test_cs_scores_get_no_weight_decay_and_the_weights_keep_theirs(tmp_path):
    module = UserModule(lr=LR, weight_decay=WEIGHT_DECAY)
    cs = ContinuousSparsification(penalty=0.0)
    seen = {}

    class Groups(L.Callback):
        def on_train_start(self, trainer, pl_module):
            scores = {id(s.scores) for _, s in soft_masks(pl_module)}
            for group in trainer.optimizers[0].param_groups:
                kinds = {id(p) in scores for p in group["params"]}
                assert len(kinds) == 1, "a group mixes scores and other parameters"
                seen[kinds.pop()] = group["weight_decay"]

    trainer(tmp_path, [cs, Groups()], max_epochs=1).fit(module, loader())
    assert seen == {True: 0.0, False: WEIGHT_DECAY}


@pytest.mark.parametrize("crash_epoch", [2, 5])
def test_a_resumed_run_ends_as_the_uninterrupted_run(tmp_path, crash_epoch):
    """A crash in epoch 2 (the second round's first) or 5 (the ticket's second) and a resume
    from the end of the epoch before: the rounds' restarts, the binarized mask, the replayed
    per-step schedule and the ticket's weights come back exactly."""

    def run(root, *extra, ckpt_path=None):
        torch.manual_seed(0)
        module = LinearDecayModule(lr=LR)
        cs = ContinuousSparsification(penalty=PENALTY, rounds=ROUNDS, ticket=TICKET, rewind=REWIND)
        checkpoints = ModelCheckpoint(dirpath=root, save_last=True)
        run = trainer(
            root, [cs, checkpoints, *extra], max_epochs=MAX_EPOCHS, num_sanity_val_steps=0
        )
        run.fit(module, loader(), ckpt_path=ckpt_path)
        return module, run

    straight, straight_run = run(tmp_path / "straight")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "crashed", CrashInEpoch(crash_epoch, batch=2))
    resumed, resumed_run = run(tmp_path / "resumed", ckpt_path=tmp_path / "crashed" / "last.ckpt")
    for (key, value), (other, resumed_value) in zip(
        straight.state_dict().items(), resumed.state_dict().items()
    ):
        assert key == other and torch.equal(value, resumed_value), key
    lrs = [[g["lr"] for g in run.optimizers[0].param_groups] for run in (straight_run, resumed_run)]
    assert lrs[0] == lrs[1]
