import lightning as L
import pytest
import torch

from helpers import UserModule, loaders, trainer
from sparsify import ConfigError
from sparsify.callbacks import PruneAtEnd, Reparametrize
from sparsify.callbacks.sign_transfer import SignTransfer
from sparsify.checkpoint import read_state_dict
from sparsify.masks import select_mask
from sparsify.reparam import layer_masks, prunable_layers
from sparsify.state import effective_weights

LAYERS = ("net.0", "net.2")


pytestmark = pytest.mark.usefixtures("one_thread")


class RecordStart(L.Callback):
    """θ and the masks when training starts (after the callbacks listed before it)."""

    def on_train_start(self, trainer, pl_module):
        self.theta = {n: l.weight.detach().clone() for n, l in prunable_layers(pl_module)}
        self.masks = {n: m.clone() for n, m in layer_masks(pl_module).items()}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A dense network trained for two epochs, saved as a Lightning checkpoint."""
    path = tmp_path_factory.mktemp("source") / "dense.ckpt"
    L.seed_everything(0)
    t = trainer(path.parent, [], max_epochs=2)
    t.fit(UserModule(), *loaders())
    t.save_checkpoint(path)
    return path


def start(tmp_path, callbacks, seed=7):
    L.seed_everything(seed)
    module = UserModule()
    init = {n: l.weight.detach().clone() for n, l in prunable_layers(module)}
    record = RecordStart()
    trainer(tmp_path, [*callbacks, record], max_epochs=1).fit(module, *loaders())
    return init, record


@pytest.mark.parametrize("reparam", [False, True])
@pytest.mark.parametrize("keep", ["signs", "magnitudes", "both", "none"])
def test_sign_transfer_sets_the_mask_and_the_signs_or_magnitudes(tmp_path, source, keep, reparam):
    theta_src = effective_weights(read_state_dict(source))
    sources = {n: theta_src[n] for n in LAYERS}
    expected_masks = select_mask({n: t.abs() for n, t in sources.items()}, sources, 0.7)
    callbacks = [Reparametrize(beta=1.0)] if reparam else []
    callbacks.append(SignTransfer(str(source), keep=keep, sparsity=0.7))
    init, record = start(tmp_path, callbacks)
    for name in LAYERS:
        mask = expected_masks[name].bool()
        assert torch.equal(record.masks[name].bool(), mask)
        theta, src, first = record.theta[name], theta_src[name], init[name]
        assert (theta[~mask] == 0).all()
        theta, src, first = theta[mask], src[mask], first[mask]
        sign = {"signs": src, "magnitudes": first, "both": src, "none": first}[keep]
        size = {"signs": first, "magnitudes": src, "both": src, "none": first}[keep]
        assert torch.equal(theta.sign(), sign.sign())
        assert torch.allclose(theta.abs(), size.abs(), rtol=1e-5, atol=1e-7)
        assert not torch.equal(first.sign(), src.sign())  # the two sources really differ


def test_masks_stored_in_a_sparse_checkpoint_and_resume(tmp_path, source):
    L.seed_everything(0)
    sparse = trainer(tmp_path, [PruneAtEnd(0.6)], max_epochs=1)
    sparse.fit(UserModule(), *loaders())
    sparse.save_checkpoint(tmp_path / "sparse.ckpt")
    stored = {n: m.clone() for n, m in layer_masks(sparse.lightning_module).items()}

    transfer = SignTransfer(str(source), keep="signs", mask_from=str(tmp_path / "sparse.ckpt"))
    _, record = start(tmp_path, [transfer])
    for name in LAYERS:
        assert torch.equal(record.masks[name], stored[name])


def test_a_resumed_run_does_not_transfer_again(tmp_path, source):
    L.seed_everything(7)
    first = trainer(tmp_path, [SignTransfer(str(source), sparsity=0.7)], max_epochs=1)
    first.fit(UserModule(), *loaders())
    first.save_checkpoint(tmp_path / "mid.ckpt")
    trained = {n: l.weight.detach().clone() for n, l in prunable_layers(first.lightning_module)}
    again, record = SignTransfer(str(source), keep="both", sparsity=0.7), RecordStart()
    resumed = trainer(tmp_path, [again, record], max_epochs=2)
    resumed.fit(UserModule(), *loaders(), ckpt_path=tmp_path / "mid.ckpt")
    assert again.done
    for name in LAYERS:
        assert torch.equal(record.theta[name], trained[name])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(keep="sizes"), r"keep='sizes' is invalid: choose one of signs, magnitudes"),
        (dict(mask_from="nowhere.ckpt"), r"mask_from='nowhere.ckpt' is invalid: no such file"),
        (dict(sparsity=1.2), r"sparsity=1.2 is invalid"),
    ],
)
def test_bad_sign_transfer_arguments_are_refused(source, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SignTransfer(str(source), **kwargs)


def test_a_dense_checkpoint_has_no_masks_to_take(tmp_path, source):
    with pytest.raises(ConfigError, match="holds no masks; give sparsity="):
        start(tmp_path, [SignTransfer(str(source), keep="signs")])
