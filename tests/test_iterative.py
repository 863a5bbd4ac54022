import lightning as L
import pytest
import torch

from helpers import UserModule, loaders, trainer
from sparsify import ConfigError, sparsity_report
from sparsify.lightning.iterative import iterative_pruning, round_sparsities
from sparsify.reparam import layer_masks


class DecayingUserModule(UserModule):
    """The user's module with a learning rate that halves every epoch."""

    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)]


class RecordStart(L.Callback):
    """The weights and the learning rate each round starts from."""

    def __init__(self):
        self.weights, self.lrs = [], []

    def on_train_start(self, trainer, pl_module):
        self.weights.append(pl_module.net[0].weight.detach().clone())
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


class RecordEpoch1(L.Callback):
    def __init__(self):
        self.weight = None

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1 and self.weight is None:
            self.weight = pl_module.net[0].weight.detach().clone()


def run(tmp_path, rewind):
    module, start, epoch1 = DecayingUserModule(), RecordStart(), RecordEpoch1()
    ends = []
    records = iterative_pruning(
        module,
        lambda extra: trainer(tmp_path, [*extra, start, epoch1], max_epochs=2),
        sparsity=0.75,
        rounds=2,
        rewind=rewind,
        rewind_epoch=1,
        after_round=lambda r, t, m: ends.append(m.net[0].weight.detach().clone()),
        train_dataloaders=loaders()[0],
    )
    return module, records, start, epoch1, ends


def test_geometric_round_sparsities():
    assert round_sparsities(0.75, 2) == pytest.approx([0.5, 0.75])


def test_imp_reaches_the_target_and_rewinds_the_weights_to_epoch_1(tmp_path):
    module, records, start, epoch1, _ = run(tmp_path, "weights")
    assert [r["sparsity"] for r in records] == pytest.approx([0.0, 0.5, 0.75], abs=0.01)
    assert sparsity_report(module)["global"] == pytest.approx(0.75, abs=0.01)
    for r in (1, 2):  # the surviving weights start from their values at epoch 1 of round 0
        live = start.weights[r] != 0
        torch.testing.assert_close(start.weights[r][live], epoch1.weight[live])
    assert torch.equal(start.weights[2] != 0, layer_masks(module)["net.0"].bool())
    assert start.lrs == [0.1, 0.1, 0.1]


def test_lrr_keeps_the_trained_weights_and_restarts_the_learning_rate(tmp_path):
    module, records, start, _, ends = run(tmp_path, "lr")
    assert records[-1]["sparsity"] == pytest.approx(0.75, abs=0.01)
    for r in (1, 2):
        live = start.weights[r] != 0
        torch.testing.assert_close(start.weights[r][live], ends[r - 1][live])
    assert start.lrs == [0.1, 0.1, 0.1]


def test_rewind_epoch_beyond_the_first_round_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="rewind_epoch=5 is invalid with max_epochs=2"):
        iterative_pruning(
            UserModule(),
            lambda extra: trainer(tmp_path, extra, max_epochs=2),
            sparsity=0.5,
            rewind_epoch=5,
            train_dataloaders=loaders()[0],
        )
