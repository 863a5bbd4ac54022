"""The Lightning callback and the Hugging Face twin of each method on θ = m ⊙ w (Reparametrize,
Sign-In, PILoT, the L1 penalties, the HAM step) are adapters of one rule (``sparsify.rules``):
the same arguments on the same batches give the same training."""

import pytest
import torch
from frameworks import (
    LightningDecay,
    Net,
    TrainerDecay,
    assert_same_weights,
    train_hf,
    train_lightning,
)

from sparsify import callbacks, hf, prune_at_init, sparsity_report
from sparsify.optim import HAM
from sparsify.reparam import pointwise_factors

pytestmark = pytest.mark.usefixtures("one_thread")


def test_reparametrize(tmp_path):
    nets = Net(), Net()
    untouched = Net()
    options = {"beta": 0.5, "exclude": ["*fc2"]}
    train_lightning(nets[0], [callbacks.Reparametrize(**options)], 2, tmp_path)
    train_hf(nets[1], [hf.Reparametrize(**options)], 2, tmp_path)
    for net in nets:
        assert [name for name, _, _ in pointwise_factors(net)] == ["fc1.weight"]
    assert_same_weights(*nets)
    assert not torch.allclose(nets[0].fc1.weight, untouched.fc1.weight)  # it trained


class LightningSignIn(callbacks.SignIn):
    """The Lightning SignIn, keeping what it logs at the end of each epoch."""

    def epoch_end(self, run):
        measured = super().epoch_end(run)
        self.measurements = [*getattr(self, "measurements", []), measured]
        return measured


@pytest.mark.parametrize("every", [{"every_n_epochs": 2}, {"every_n_steps": 3}])
def test_sign_in(tmp_path, every):
    nets = Net(), Net()
    for net in nets:
        prune_at_init(net, 0.5, "magnitude")
    options = {"beta": 1.0, **every}
    lightning, trainer = LightningSignIn(**options), hf.SignIn(**options)
    train_lightning(nets[0], [lightning], 3, tmp_path)
    train_hf(nets[1], [trainer], 3, tmp_path)
    assert (
        lightning.last_rescale == trainer.last_rescale == (2 if "every_n_epochs" in every else 12)
    )
    for name, sign in lightning.init_signs.items():  # LitNet holds the Net as "net"
        assert torch.equal(trainer.init_signs[name.removeprefix("net.")], sign)
    assert len(trainer.measurements) == 3
    for ours, theirs in zip(lightning.measurements, trainer.measurements):
        assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)
    assert trainer.measurements[-1]["signin/flips_since_init"] > 0
    for net in nets:
        assert sparsity_report(net)["global"] == pytest.approx(0.5, abs=0.02)
    assert_same_weights(*nets)


@pytest.mark.parametrize("schedule", ["adaptive", "inverse"])
def test_pilot(tmp_path, schedule):
    """Left at its default ``monitor``, each follows the epoch's mean training loss: the
    Lightning one averages what ``training_step`` returned (``train/acc`` is not logged), the
    ``Trainer``'s reads its logged ``loss``."""
    nets = Net(), Net()
    options = {"alpha_init": 1e-2, "delta": 2.0, "l1_threshold": 0.0, "schedule": schedule}
    lightning, trainer = callbacks.PILoT(**options), hf.PILoT(**options)
    decay = LightningDecay(), TrainerDecay()
    train_lightning(nets[0], [callbacks.Reparametrize(), lightning, decay[0]], 8, tmp_path)
    train_hf(nets[1], [hf.Reparametrize(), trainer, decay[1]], 8, tmp_path)
    assert lightning.history == pytest.approx(trainer.history, rel=1e-12)
    if schedule == "adaptive":  # grows while the loss falls and k < T/2 = 4, then decays
        assert lightning.follows_loss
        assert trainer.history == pytest.approx([1e-2 * 2**k for k in (0, 1, 2, 3, 2, 1, 0, -1)])
    else:
        assert trainer.history == pytest.approx([1e-2 / k for k in range(1, 9)])
    assert decay[0].decay == decay[1].decay
    assert [d[0] for d in decay[1].decay[::4]] == pytest.approx([2 * a for a in trainer.history])
    assert lightning.reference_norm == pytest.approx(trainer.reference_norm, rel=1e-6)
    assert_same_weights(*nets)


class LightningL1(callbacks.L1Penalty):
    """The Lightning L1Penalty, keeping the penalty of every step."""

    def before_optimizer_step(self, run):
        logged = super().before_optimizer_step(run)
        self.penalties = [*getattr(self, "penalties", []), float(logged["l1/penalty"])]
        return logged


@pytest.mark.parametrize("on", ["theta", "m"])
def test_l1_penalty(tmp_path, on):
    nets = Net(), Net(), Net()
    options = {"strength": 0.05, "on": on}
    lightning, trainer = LightningL1(**options), hf.L1Penalty(**options)
    train_lightning(nets[0], [callbacks.Reparametrize(), lightning], 2, tmp_path)
    train_hf(nets[1], [hf.Reparametrize(), trainer], 2, tmp_path)
    train_lightning(nets[2], [callbacks.Reparametrize()], 2, tmp_path)  # no penalty
    penalties = [float(logged["l1/penalty"]) for logged in trainer.logged]
    assert len(penalties) == 8
    assert lightning.penalties == pytest.approx(penalties, rel=1e-5)
    assert_same_weights(*nets[:2])
    l1 = [sum(float(m.detach().abs().sum()) for _, m, _ in pointwise_factors(net)) for net in nets]
    assert l1[0] < l1[2]  # the penalty shrank m (for θ = m ⊙ w as well, through m and w)


@pytest.mark.parametrize("factors", [False, True], ids=["plain", "m_w"])
def test_ham_step(tmp_path, factors):
    nets = Net(), Net(), Net()
    options = {"alpha": 2.0, "beta": 1e-2}
    first = [callbacks.Reparametrize()] if factors else []
    lightning = train_lightning(nets[0], [*first, callbacks.HAMStep(**options)], 2, tmp_path)
    train_hf(
        nets[1], ([hf.Reparametrize()] if factors else []) + [hf.HAMStep(**options)], 2, tmp_path
    )
    train_lightning(nets[2], list(first), 2, tmp_path)  # no HAM step
    assert isinstance(lightning.optimizers[0], HAM)
    assert_same_weights(*nets[:2])
    assert not torch.allclose(nets[0].fc2.weight, nets[2].fc2.weight, atol=1e-4)
