"""The mask methods' Lightning callbacks and Hugging Face ``TrainerCallback`` s are adapters of one
rule each (``sparsify.rules``): the same arguments on the same batches give the same masks, the
same sparsity and the same weights."""

import lightning as L
import pytest
import torch

pytest.importorskip("transformers")

from frameworks import Net, train_hf, train_lightning  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from sparsify import callbacks, hf  # noqa: E402
from sparsify.errors import ConfigError  # noqa: E402
from sparsify.masks import sparsity_report  # noqa: E402
from sparsify.reparam import layer_masks  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


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


def train_both(tmp_path, make_callback, epochs: int = 2) -> tuple:
    """Each framework from the same initialization, and from the same random state when training
    starts (the two frameworks draw differently before)."""
    nets = Net(), Net()
    lightning, trainer = make_callback(callbacks), make_callback(hf)
    train_lightning(nets[0], [LightningSeed(), lightning], epochs, tmp_path)
    train_hf(nets[1], [TrainerSeed(), trainer], epochs, tmp_path)
    return nets, lightning, trainer


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
    (a, b), lightning, trainer = train_both(tmp_path, lambda m: m.PruneAtInit(0.75, **options))
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
