"""Continuous sparsification against the authors' algorithm, re-derived here in plain PyTorch.

Reference: lolemacs/continuous-sparsification, ``main.py`` (the training protocol: rounds,
temperature schedule, penalty, optimizers, clamp, rewind and ticket) and ``models/layers.py``
(``SoftMaskedConv2d``: mask = σ(τ s)/σ(s₀), ``prune``, ``checkpoint``, ``rewind_weights``).

What the reference does, in our words: each masked weight is used as w · σ(τ s) / σ(s₀). The
loss is the task loss plus λ times the sum of those scaled soft masks. The weights (and every
other parameter) are stepped by one SGD with weight decay, the scores by a second SGD with the
same learning rate and momentum and no weight decay. A round has E epochs; τ starts at 1 and is
multiplied by τ_final^(1/(E − 1)) at the start of every later epoch. At the start of epoch k of
the first round all non-score state is saved. After every round but the last, τ goes back to 1
and then the scores are clamped, s ← min(τ s, s₀) with that τ = 1. Finally the weights are
rewound to the saved state, the mask becomes 1[s > 0] / σ(s₀), and the weights train under it
with a new optimizer (no momentum carried over).

Both sides here use the user's plain SGD (momentum 0.9, no Nesterov, weight decay 1e-3) and the
same batches in the same order, so the states must agree to float rounding. Deviation checked
here by construction: we multiply 1/σ(s₀) into the ticket's weights; the reference keeps it as
a factor outside them (see docs/methods.md).
"""

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from helpers import UserModule, blobs, trainer
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
    """The scores after the last search epoch and θ, biases and optimizer state as the ticket
    starts (this callback runs after CS's own epoch-start hook)."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == ROUNDS * EPOCHS_PER_ROUND - 1:
            self.scores = {n: s.scores.detach().clone() for n, s in soft_masks(pl_module)}

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == ROUNDS * EPOCHS_PER_ROUND:
            net = pl_module.net
            self.theta = {n: net.get_submodule(n[4:]).weight.detach().clone() for n in LAYERS}
            self.bias = {n: net.get_submodule(n[4:]).bias.detach().clone() for n in LAYERS}
            self.optimizer_state = len(trainer.optimizers[0].state)


def reference(net: torch.nn.Sequential, data: list) -> dict:
    """The reference protocol on a copy of ``net`` (Linear, ReLU, Linear), with tensors."""
    weights = [net[i].weight.detach().clone().requires_grad_() for i in (0, 2)]
    biases = [net[i].bias.detach().clone().requires_grad_() for i in (0, 2)]
    scores = [torch.full_like(w, S0, requires_grad=True) for w in weights]
    scale = 1 / torch.sigmoid(torch.tensor(S0))

    def loss_of(x, y, layer_masks):
        hidden = F.relu(F.linear(x, weights[0] * layer_masks[0], biases[0]))
        return F.cross_entropy(F.linear(hidden, weights[1] * layer_masks[1], biases[1]), y)

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
    return {
        "scores": searched,
        "theta": ticket_start,
        "bias": [b.detach().clone() for b in biases],
        "masks": binary,
    }


def test_cs_rounds_rewind_and_ticket_match_the_reference(tmp_path):
    data = loader()
    module = UserModule(lr=LR, weight_decay=WEIGHT_DECAY)
    expected = reference(module.net, list(data))
    cs = ContinuousSparsification(
        penalty=PENALTY,
        s_init=S0,
        temperature_final=FINAL_TEMPERATURE,
        rounds=ROUNDS,
        ticket=TICKET,
        rewind=REWIND,
    )
    assert cs.schedule(MAX_EPOCHS) == ([0, 2], 4, REWIND_EPOCH)
    record = Record()
    run = trainer(tmp_path, [cs, record], max_epochs=MAX_EPOCHS, num_sanity_val_steps=0)
    run.fit(module, data)
    for i, name in enumerate(LAYERS):
        torch.testing.assert_close(record.scores[name], expected["scores"][i], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(record.theta[name], expected["theta"][i], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(record.bias[name], expected["bias"][i], atol=1e-6, rtol=1e-5)
        assert torch.equal(layer_masks(module)[name], expected["masks"][i])
    assert record.optimizer_state == 0  # fresh momentum for the ticket
    learned = sum(int(m.sum()) for m in expected["masks"]) / sum(
        m.numel() for m in expected["masks"]
    )
    assert 0.05 < learned < 0.95, learned  # the penalty has pruned, but not everything
    assert not list(soft_masks(module, SigmoidMask))


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
