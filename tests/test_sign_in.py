"""Sign-In: m ⊙ w with inner scale 1 on the kept weights, re-split every p epochs."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import UserModule, blobs, trainer
from sparsify import ConfigError, reparametrize
from sparsify.callbacks import PruneAtInit, SignFlipMonitor, SignIn
from sparsify.callbacks.sign_flip_monitor import weight_signs
from sparsify.masks import set_masks
from sparsify.reparam import layer_masks, pointwise_factors
from sparsify.sign_flips import inner_scale, sign_flips, signs

PROBE = torch.linspace(-2, 2, 40).view(5, 8)


pytestmark = pytest.mark.usefixtures("one_thread")


def ordered_loaders():
    """Unshuffled data: a resumed run sees the batches an uninterrupted one sees."""
    return DataLoader(TensorDataset(*blobs()), batch_size=16), None


class Watch(L.Callback):
    """Listed after SignIn: the outputs and inner scales at the end and start of every epoch."""

    def __init__(self):
        self.ends, self.starts = [], []

    def snapshot(self, pl_module):
        factors = [
            (m.detach().clone(), w.detach().clone()) for _, m, w in pointwise_factors(pl_module)
        ]
        return pl_module(PROBE).detach(), inner_scale(pl_module), factors

    def on_train_epoch_end(self, trainer, pl_module):
        self.ends.append(self.snapshot(pl_module))

    def on_train_epoch_start(self, trainer, pl_module):
        self.starts.append(self.snapshot(pl_module))


def test_rescale_keeps_the_outputs_and_resets_the_inner_scale_to_one(tmp_path):
    watch = Watch()
    L.seed_everything(0)
    run = trainer(tmp_path, [SignIn(beta=1.0, every_n_epochs=1), watch], max_epochs=3)
    run.fit(UserModule(lr=0.2, weight_decay=0.05), *ordered_loaders())
    assert len(list(pointwise_factors(run.lightning_module))) == 2
    for (out_end, scale_end, _), (out_start, scale_start, factors) in zip(
        watch.ends, watch.starts[1:]
    ):
        assert scale_end < 0.999  # weight decay shrank m² − w²
        assert scale_start == pytest.approx(1.0)
        torch.testing.assert_close(out_start, out_end, rtol=1e-5, atol=1e-5)
        for m, w in factors:
            torch.testing.assert_close(m**2 - w**2, torch.ones_like(m))
    assert run.callback_metrics["signin/inner_scale"] == pytest.approx(watch.ends[-1][1])


def test_flips_are_counted_on_the_kept_nonzero_weights():
    layer = nn.Linear(2, 2, bias=False)
    reparametrize(layer, mask={"": torch.tensor([[1.0, 1.0], [1.0, 0.0]])})
    with torch.no_grad():
        layer.weight = torch.tensor([[1.0, -1.0], [2.0, 3.0]])
    reference = signs(layer)
    assert reference[""].tolist() == [[1, -1], [1, 0]]
    with torch.no_grad():
        layer.weight = torch.tensor([[-1.0, -1.0], [-2.0, -3.0]])
    assert sign_flips(layer, reference) == pytest.approx(2 / 3)  # (0,0), (1,0); (1,1) masked
    with torch.no_grad():
        layer.weight = torch.tensor([[0.0, -1.0], [-2.0, 5.0]])
    assert sign_flips(layer, reference) == pytest.approx(1 / 2)  # θ = 0 is not counted
    assert inner_scale(layer) == pytest.approx(1.0)


@pytest.mark.parametrize("signin_first", [True, False])
def test_sign_in_trains_the_prune_at_init_mask_and_weights_flip(tmp_path, signin_first):
    callbacks = [SignIn(), PruneAtInit(0.7, score="snip")]
    L.seed_everything(0)
    run = trainer(tmp_path, callbacks if signin_first else callbacks[::-1], max_epochs=3)
    module = UserModule(lr=0.3, weight_decay=0.0)
    run.fit(module, *ordered_loaders())
    for layer, mask in layer_masks(module).items():
        theta = module.get_submodule(layer).weight
        assert mask.mean() < 1
        assert torch.all(theta[mask == 0] == 0)
    assert run.callback_metrics["signin/flips_since_init"] > 0


def test_a_resumed_run_keeps_the_initial_signs_and_rescales_where_it_would_have(tmp_path):
    L.seed_everything(0)
    straight_cb = SignIn(every_n_epochs=2)
    straight = trainer(tmp_path / "a", [straight_cb], max_epochs=4)
    straight.fit(UserModule(lr=0.2), *ordered_loaders())

    L.seed_everything(0)
    first = trainer(tmp_path / "b", [SignIn(every_n_epochs=2)], max_epochs=3)
    first.fit(UserModule(lr=0.2), *ordered_loaders())
    first.save_checkpoint(tmp_path / "epoch3.ckpt")
    L.seed_everything(5)  # another initialization: the checkpoint must overwrite it all
    resumed_cb = SignIn(every_n_epochs=2)
    module = UserModule(lr=0.2)
    resumed = trainer(tmp_path / "c", [resumed_cb], max_epochs=4)
    resumed.fit(module, *ordered_loaders(), ckpt_path=tmp_path / "epoch3.ckpt")

    assert resumed_cb.last_rescale == straight_cb.last_rescale == 2
    for name, sign in straight_cb.init_signs.items():
        assert torch.equal(resumed_cb.init_signs[name], sign)
    for key, value in straight.lightning_module.state_dict().items():
        torch.testing.assert_close(module.state_dict()[key], value, msg=key)


def test_bad_sign_in_arguments_are_refused():
    with pytest.raises(ConfigError, match="every_n_epochs=0 is invalid"):
        SignIn(every_n_epochs=0)
    with pytest.raises(ConfigError, match="beta=-1"):
        SignIn(beta=-1)


def test_sign_in_keeps_a_mask_set_before_it(tmp_path):
    module = UserModule()
    set_masks(module, {"net.0": (torch.rand(32, 8) > 0.5).float()})
    before = layer_masks(module)["net.0"].clone()
    run = trainer(tmp_path, [SignIn()], max_epochs=1)
    run.fit(module, *ordered_loaders())
    assert torch.equal(layer_masks(module)["net.0"], before)
    assert torch.all(module.net[0].weight[before == 0] == 0)


def test_the_flip_monitor_measures_what_sign_in_measures_and_a_baseline_too(tmp_path):
    """SignFlipMonitor counts from the first epoch's start, as SignIn does from its first
    rescale: on a Sign-In run the two agree; on the same run without Sign-In it still counts."""
    monitor = SignFlipMonitor()
    L.seed_everything(0)
    run = trainer(tmp_path / "signin", [monitor, SignIn(), PruneAtInit(0.7, score="snip")], 3)
    run.fit(UserModule(lr=0.3, weight_decay=0.0), *ordered_loaders())
    flips = run.callback_metrics["signs/flips_since_start"]
    assert flips > 0
    assert flips == pytest.approx(run.callback_metrics["signin/flips_since_init"])

    L.seed_everything(0)
    plain = trainer(tmp_path / "plain", [SignFlipMonitor(), PruneAtInit(0.7, score="snip")], 3)
    module = UserModule(lr=0.3, weight_decay=0.0)
    plain.fit(module, *ordered_loaders())
    start, now = plain.callbacks[0].start_signs, weight_signs(module)
    both = [(start[k] != 0) & (now[k] != 0) for k in now]
    differ = sum(int((b & (start[k] != now[k])).sum()) for b, k in zip(both, now))
    counted = sum(int(b.sum()) for b in both)
    assert plain.callback_metrics["signs/flips_since_start"] == pytest.approx(differ / counted)
    zeros = sum(int((sign == 0).sum()) for sign in start.values())
    total = sum(sign.numel() for sign in start.values())
    assert zeros / total == pytest.approx(0.7, abs=0.01)  # taken after PruneAtInit, so not counted


def test_a_resumed_flip_monitor_keeps_its_starting_signs(tmp_path):
    L.seed_everything(0)
    first = trainer(tmp_path / "a", [SignFlipMonitor()], max_epochs=2)
    first.fit(UserModule(lr=0.3), *ordered_loaders())
    first.save_checkpoint(tmp_path / "epoch2.ckpt")
    assert first.callback_metrics["signs/flips_since_start"] > 0  # the signs at 2 differ
    L.seed_everything(5)
    resumed_monitor = SignFlipMonitor()
    resumed = trainer(tmp_path / "b", [resumed_monitor], max_epochs=3)
    resumed.fit(UserModule(lr=0.3), *ordered_loaders(), ckpt_path=tmp_path / "epoch2.ckpt")
    for name, sign in first.callbacks[0].start_signs.items():
        assert torch.equal(resumed_monitor.start_signs[name], sign)
