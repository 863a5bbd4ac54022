import logging

import lightning as L
import pytest
import torch
from torch import nn

from helpers import UserModule, loaders, trainer
from sparsify import ConfigError, sparsity_report
from sparsify.callbacks import ContinuousSparsification, PruneAtEnd, SoftThresholdReparametrization
from sparsify.reparam import Mask, layer_masks, reparametrize
from sparsify.soft_masks import SigmoidMask, harden, sigmoid_mask, soft_masks, soft_threshold


def plain_masks_only(module):
    parametrizations = [
        type(p)
        for _, layer in module.named_modules()
        if hasattr(layer, "parametrizations")
        for p in layer.parametrizations.weight
    ]
    return parametrizations and all(kind is Mask for kind in parametrizations)


def assert_exact_zeros_are_masked(module):
    live = layer_masks(module)
    for name, layer in [("net.0", module.net[0]), ("net.2", module.net[2])]:
        assert torch.equal(layer.weight == 0, live[name] == 0)


def test_str_ends_with_exact_zeros_under_plain_masks(tmp_path):
    module = UserModule()
    callback = SoftThresholdReparametrization(s_init=-2.0, threshold_weight_decay=0.1)
    trainer(tmp_path, [callback], max_epochs=2).fit(module, *loaders())
    assert not list(soft_masks(module))
    assert plain_masks_only(module)
    assert_exact_zeros_are_masked(module)
    assert sparsity_report(module)["global"] > 0.1


def test_soft_threshold_zeroes_the_weights_below_the_threshold():
    layer = nn.Linear(4, 4)
    soft_threshold(layer, s_init=0.0)  # threshold sigmoid(0) = 0.5
    w = torch.tensor([[-1.0, -0.4, 0.2, 0.75]]).repeat(4, 1)
    with torch.no_grad():
        layer.parametrizations.weight.original.copy_(w)
    expected = torch.tensor([[-0.5, 0.0, 0.0, 0.25]]).repeat(4, 1)
    torch.testing.assert_close(layer.weight, expected)
    harden(layer)
    torch.testing.assert_close(layer.weight, expected)
    assert torch.equal(layer_masks(layer)[""], (expected != 0).float())


def test_str_then_prune_at_end_reaches_the_target_and_keeps_it_while_fine_tuning(tmp_path):
    module = UserModule()
    callbacks = [SoftThresholdReparametrization(s_init=-4.0), PruneAtEnd(0.6, finetune_epochs=1)]
    trainer(tmp_path, callbacks, max_epochs=3).fit(module, *loaders())
    assert plain_masks_only(module)
    assert sparsity_report(module)["global"] == pytest.approx(0.6, abs=1 / 352)
    assert_exact_zeros_are_masked(module)


class AfterPruning(L.Callback):
    """Records, at the start of the fine-tuning epoch (just after ``PruneAtEnd`` pruned), each
    layer's θ and the momentum of its weight parameter."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == trainer.max_epochs - 1:
            optimizer = trainer.optimizers[0]
            self.theta, self.momentum = {}, {}
            for name in ("net.0", "net.2"):
                layer = pl_module.get_submodule(name)
                weight = layer.parametrizations.weight.original
                self.theta[name] = layer.weight.detach().clone()
                self.momentum[name] = optimizer.state[weight]["momentum_buffer"].clone()


def learned_zeros(pruner):
    """{layer: θ == 0} of the hardened model, just before PruneAtEnd chose its mask."""
    state = pruner.unpruned_state_dict
    return {
        name: state[f"{name}.parametrizations.weight.original"]
        * state[f"{name}.parametrizations.weight.0.mask"]
        == 0
        for name in ("net.0", "net.2")
    }


LEARNS_MORE_THAN_TARGET = {
    "cs": lambda: ContinuousSparsification(penalty=0.02, s_init=0.05, temperature_final=50.0),
    "str": lambda: SoftThresholdReparametrization(s_init=-2.0, threshold_weight_decay=0.1),
}


@pytest.mark.parametrize("method", LEARNS_MORE_THAN_TARGET)
def test_prune_at_end_revives_no_exact_zero_of_a_sparser_learned_mask(tmp_path, method, caplog):
    """CS and STR learn more than the 30 % target here: the learned mask is kept whole (no
    weight that was exactly 0 comes back by tie order) and the achieved sparsity is reported."""
    module = UserModule()
    pruner = PruneAtEnd(0.3, finetune_epochs=1)
    with caplog.at_level(logging.INFO):
        trainer(tmp_path, [LEARNS_MORE_THAN_TARGET[method](), pruner], max_epochs=3).fit(
            module, *loaders()
        )
    zeros = learned_zeros(pruner)
    learned = sum(int(z.sum()) for z in zeros.values()) / sum(z.numel() for z in zeros.values())
    assert learned > 0.5
    live = layer_masks(module)
    for name, zero in zeros.items():
        assert torch.equal(live[name] == 0, zero.to(live[name].device))
    assert pruner.achieved == pytest.approx(learned)
    assert sparsity_report(module)["global"] == pytest.approx(learned)
    assert f"achieved sparsity {learned:.4f}" in caplog.text


def test_prune_at_end_regrows_at_random_from_zero_with_cleared_momentum(tmp_path):
    module = UserModule()
    pruner = PruneAtEnd(0.3, finetune_epochs=1, regrow="random")
    probe = AfterPruning()
    callbacks = [LEARNS_MORE_THAN_TARGET["cs"](), pruner, probe]
    trainer(tmp_path, callbacks, max_epochs=3).fit(module, *loaders())
    zeros = learned_zeros(pruner)
    assert pruner.achieved == pytest.approx(0.3, abs=1 / 352)
    live = layer_masks(module)
    grown = {name: zero & (live[name] != 0) for name, zero in zeros.items()}
    assert sum(int(g.sum()) for g in grown.values()) > 50
    for name, where in grown.items():
        assert (probe.theta[name][where] == 0).all()
        assert (probe.momentum[name][where] == 0).all()
        assert (probe.momentum[name][~zeros[name]] != 0).any()  # the others keep theirs
    # The learned non-zeros are all kept.
    assert all(bool((live[name][~zero] == 1).all()) for name, zero in zeros.items())


def test_prune_at_end_refuses_an_unknown_regrowth_rule():
    with pytest.raises(ConfigError, match="regrow='gradient' is invalid: choose one of random"):
        PruneAtEnd(0.5, regrow="gradient")


def test_cs_binarizes_the_soft_mask_to_positive_scores():
    layer = nn.Linear(3, 2)
    sigmoid_mask(layer, s_init=0.5, temperature=2.0)
    soft = next(p for _, p in soft_masks(layer, SigmoidMask))
    with torch.no_grad():
        soft.scores.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.3, -0.2, 2.0]]))
    w = layer.parametrizations.weight.original.detach().clone()
    scale = 1 / torch.sigmoid(torch.tensor(2.0 * 0.5))
    harden(layer)
    keep = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    torch.testing.assert_close(layer.weight, w * scale * keep)
    assert int((layer.weight == 0).sum()) == 3


def test_cs_ticket_mask_keeps_the_scale_outside_the_trained_weight():
    """lolemacs/continuous-sparsification, models/layers.py (``compute_mask`` with ``ticket``):
    the ticket uses w ⊙ 1[s > 0] / σ(s₀), so ∂θ/∂w is 1/σ(s₀) on the kept weights."""
    layer = nn.Linear(3, 2)
    sigmoid_mask(layer, s_init=0.5, temperature=2.0)
    soft = next(p for _, p in soft_masks(layer, SigmoidMask))
    with torch.no_grad():
        soft.scores.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.3, -0.2, 2.0]]))
    soft.binarize_()
    w = layer.parametrizations.weight.original
    scale = 1 / torch.sigmoid(torch.tensor(2.0 * 0.5))
    keep = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    torch.testing.assert_close(layer.weight, w.detach() * scale * keep)
    assert torch.equal(soft.mask, keep)
    layer(torch.ones(4, 3)).sum().backward()
    torch.testing.assert_close(w.grad, 4 * scale * keep * torch.ones(2, 1))
    assert torch.equal(soft.scores.grad, torch.zeros(2, 3))  # a gradient, of zero
    theta = layer.weight.detach().clone()
    harden(layer)  # θ stays, the factor is multiplied into the plain weight
    torch.testing.assert_close(layer.weight, theta)


def test_cs_raises_the_temperature_and_ends_with_exact_zeros(tmp_path):
    module = UserModule()
    callback = ContinuousSparsification(penalty=0.005, s_init=0.05, temperature_final=50.0)
    t = trainer(tmp_path, [callback], max_epochs=3)
    t.fit(module, *loaders())
    assert float(t.callback_metrics["cs/temperature"]) == pytest.approx(50.0)
    assert callback.temperature(1, 3) == pytest.approx(50.0**0.5)
    assert not list(soft_masks(module))
    assert_exact_zeros_are_masked(module)
    assert 0.1 < sparsity_report(module)["global"] < 0.99


def test_soft_masks_refuse_a_reparametrized_weight():
    layer = nn.Linear(3, 2)
    reparametrize(layer)
    with pytest.raises(ConfigError, match="reparametrized as m ⊙ w"):
        soft_threshold(layer)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SoftThresholdReparametrization(threshold_weight_decay=-1.0), "is invalid"),
        (lambda: ContinuousSparsification(penalty=-1.0), "penalty=-1.0 is invalid"),
        (lambda: ContinuousSparsification(temperature_init=5.0, temperature_final=1.0), "need 0"),
    ],
)
def test_bad_arguments_fail_in_init(make, message):
    with pytest.raises(ConfigError, match=message):
        make()
