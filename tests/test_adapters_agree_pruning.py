"""The pruning methods' Lightning callbacks and Hugging Face ``TrainerCallback`` s are adapters of
one rule each (``sparsify.rules``): the same arguments on the same batches give the same masks
before every optimizer step, the same sparsity and the same weights."""

import inspect

import lightning as L
import pytest
import torch
from frameworks import Net, assert_same_weights, train_hf, train_lightning
from transformers import TrainerCallback

from sparsify import callbacks, hf, sparsity_report
from sparsify.reparam import layer_masks

pytestmark = pytest.mark.usefixtures("one_thread")


def masks_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The masks by layer name, without the ``net.`` of the LightningModule around the net."""
    return {name.removeprefix("net."): m.clone() for name, m in layer_masks(model).items()}


class LightningMasks(L.Callback):
    """The masks before every optimizer step."""

    def __init__(self):
        self.masks = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.masks.append(masks_of(pl_module))


class TrainerMasks(TrainerCallback):
    """The masks before every optimizer step."""

    def __init__(self):
        self.masks = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.masks.append(masks_of(model))


class LightningSeed(L.Callback):
    """The same random state when training starts under both frameworks (RiGL's initial mask is
    drawn from it)."""

    def on_train_start(self, trainer, pl_module):
        torch.manual_seed(0)


class TrainerSeed(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        torch.manual_seed(0)


def train_both(tmp_path, name: str, options: dict, epochs: int = 4):
    """Train ``Net`` under both frameworks with the method ``name``; the two nets, the two
    callbacks and the masks each recorded before every optimizer step."""
    nets = Net(), Net()
    lightning = getattr(callbacks, name)(**options), LightningMasks()
    trainer = getattr(hf, name)(**options), TrainerMasks()
    train_lightning(nets[0], [LightningSeed(), *lightning], epochs, tmp_path)
    train_hf(nets[1], [TrainerSeed(), *trainer], epochs, tmp_path)
    return nets, (lightning[0], trainer[0]), (lightning[1].masks, trainer[1].masks)


def assert_same_masks(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 0
    for step, (x, y) in enumerate(zip(a, b)):
        assert x.keys() == y.keys(), step
        for name in x:
            assert torch.equal(x[name], y[name]), f"step {step}, layer {name}"


def density(masks: dict) -> float:
    return sum(float(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def test_magnitude_pruning(tmp_path):
    options = {"final_sparsity": 0.8, "start": 0.25, "end": 0.75, "frequency": 0.125}
    nets, (lightning, trainer), masks = train_both(tmp_path, "MagnitudePruning", options)
    assert_same_masks(*masks)
    assert_same_weights(*nets)
    # 16 steps: dense to step 6 (the target at t₀ is s_i = 0), new targets at 6, 8, 10, 12.
    sparsities = [round(1 - density(m), 2) for m in masks[0]]
    assert sparsities[:6] == [0.0] * 6 and sparsities[6] > 0 and len(set(sparsities)) == 5
    assert sparsities[-1] == pytest.approx(0.8, abs=0.01)
    assert lightning.state_dict() == trainer.state_dict() == {"last_pruned": 0.75, "sparsity": 0.8}
    assert [e["gmp/sparsity"] for e in trainer.logged][-1] == 0.8
    assert sparsity_report(nets[1])["global"] == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize(
    "options",
    [
        {"sparsity": 0.7, "finetune_epochs": 1},
        {"sparsity": 0.6, "scope": "layer", "finetune_epochs": 2},
        {"sparsity": 0.6, "pattern": "2:4", "layer_floor": 0.5},
    ],
)
def test_prune_at_end(tmp_path, options):
    nets, (lightning, trainer), masks = train_both(tmp_path, "PruneAtEnd", options, epochs=3)
    assert_same_masks(*masks)
    assert_same_masks([masks_of(nets[0])], [masks_of(nets[1])])
    assert_same_weights(*nets)
    tuned = options.get("finetune_epochs", 0)
    dense = (3 - tuned) * 4  # steps before pruning, 4 an epoch
    assert all(density(m) == 1 for m in masks[0][:dense])
    assert all(density(m) < 1 for m in masks[0][dense:])
    assert lightning.state_dict() == trainer.state_dict()
    assert trainer.pruned and trainer.achieved == pytest.approx(options["sparsity"], abs=0.01)
    assert trainer.pruned_epoch == (3 - tuned if tuned else 3)
    assert [e["prune/sparsity"] for e in trainer.logged if "prune/sparsity" in e] == [
        trainer.achieved
    ]


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_acdc(tmp_path, scope):
    options = {"sparsity": 0.8, "warmup": 1, "length": 1, "final": 2, "last_dense": 1}
    options |= {"unit": "epoch", "scope": scope}
    nets, (lightning, trainer), masks = train_both(tmp_path, "ACDC", options, epochs=8)
    assert_same_masks(*masks)
    assert_same_weights(*nets)
    # Epochs 0–7: dense, compressed, dense, compressed, dense, dense, compressed, compressed.
    phases = [density(m) < 1 for m in masks[0][::4]]
    assert phases == [False, True, False, True, False, False, True, True]
    assert lightning.state_dict() == trainer.state_dict() == {"phase": "compressed"}
    assert [e["acdc/phase"] for e in trainer.logged if "acdc/phase" in e] == [
        float(p) for p in phases
    ]
    assert sparsity_report(nets[1])["global"] == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_rigl(tmp_path, pattern):
    options = {"sparsity": 0.5, "every_n_steps": 2, "end": 0.75, "pattern": pattern}
    nets, (lightning, trainer), masks = train_both(tmp_path, "RiGL", options)
    assert_same_masks(*masks)
    assert_same_weights(*nets)
    # Updates at steps 0, 2, …, 10 of 16 change the mask and keep every layer's sparsity.
    changed = [not torch.equal(a["fc1"], b["fc1"]) for a, b in zip(masks[0], masks[0][1:])]
    assert any(changed[:11]) and not any(changed[11:])
    assert all(density(m) == density(masks[0][0]) for m in masks[0])
    assert density(masks[0][0]) == pytest.approx(0.5, abs=0.02) or pattern == "2:4"
    fractions = [e["rigl/update_fraction"] for e in trainer.logged if "rigl/update_fraction" in e]
    assert len(fractions) == 6 and fractions[0] == pytest.approx(0.3)
    assert lightning.state_dict() == trainer.state_dict() == {"started": True}
    assert not lightning.hooks and not trainer.hooks


@pytest.mark.parametrize("name", ["MagnitudePruning", "PruneAtEnd", "ACDC", "RiGL"])
def test_same_arguments(name):
    lightning, trainer = getattr(callbacks, name), getattr(hf, name)
    assert inspect.signature(lightning) == inspect.signature(trainer)
    assert lightning.__doc__ == trainer.__doc__ and "Args:" in trainer.__doc__


def test_prune_at_end_regrows_the_same_random_weights(tmp_path):
    """GMP leaves θ 80 % zeros; ``PruneAtEnd(0.5, regrow="random")`` then fills its target with
    zero weights drawn from its own seed, the same ones under both frameworks."""
    gmp = {"final_sparsity": 0.8, "start": 0.0, "end": 0.5, "frequency": 0.25}
    prune = {"sparsity": 0.5, "regrow": "random", "regrow_seed": 3, "layer_floor": 0.0}
    nets, pruners = (Net(), Net()), []
    for net, adapters, train in ((nets[0], callbacks, train_lightning), (nets[1], hf, train_hf)):
        pruners.append(adapters.PruneAtEnd(**prune))
        train(net, [adapters.MagnitudePruning(**gmp), pruners[-1]], 4, tmp_path)
    assert_same_masks([masks_of(nets[0])], [masks_of(nets[1])])
    assert_same_weights(*nets)
    assert pruners[0].achieved == pruners[1].achieved == pytest.approx(0.5, abs=0.01)
    assert sparsity_report(nets[1])["global"] > 0.75  # the regrown weights are still 0
