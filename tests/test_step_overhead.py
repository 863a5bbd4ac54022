"""What ``sparsify fit`` changed to cut Lightning's per-step overhead behaves like what it
replaced: the progress bar, the profiler, the batch transfer, the module's attribute setting and
the metric updated at every batch."""

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.profilers import SimpleProfiler
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from sparsify.app import progress_bar
from sparsify.app.cli import build_cli, prepare_argv
from sparsify.app.progress_bar import TimedProgressBar
from sparsify.errors import ConfigError
from sparsify.lightning.metrics import SampleMean
from sparsify.lightning.module import ImageClassifier
from sparsify.lightning.profiler import NoProfiler


def test_the_progress_bar_redraws_by_the_clock_and_at_the_last_batch(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress_bar.time, "monotonic", lambda: now[0])
    bar = TimedProgressBar(refresh_seconds=0.25)
    drawn = []
    for batch, seconds in enumerate([0.0, 0.1, 0.2, 0.3, 0.4, 0.56, 0.6], start=1):
        now[0] = 100.0 + seconds
        drawn.append(bar._should_update(batch, 8))
    assert drawn == [True, False, False, True, False, True, False]
    assert bar._should_update(8, 8)  # the last batch, 0.04 s after the last draw
    bar.disable()
    now[0] += 10
    assert not bar._should_update(9, 20)
    with pytest.raises(ConfigError, match="refresh_seconds=-1 is invalid"):
        TimedProgressBar(refresh_seconds=-1)


@pytest.mark.parametrize("refresh_seconds, draws", [(0.0, 6 + 1), (3600.0, 2 + 1)])
def test_lightning_redraws_the_bar_when_the_clock_says(tmp_path, refresh_seconds, draws):
    """Through Lightning's own hooks: every batch with no wait, else the first and the last (and
    the end of the epoch, always)."""

    class CountedBar(TimedProgressBar):
        drawn = 0

        def get_metrics(self, trainer, pl_module):  # read at every redraw
            self.drawn += 1
            return super().get_metrics(trainer, pl_module)

    bar = CountedBar(refresh_seconds=refresh_seconds)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=6,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[bar],
        default_root_dir=tmp_path,
    )
    trainer.fit(BoringModel())
    assert bar.drawn == draws


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_sparsify_fit_uses_the_cheap_profiler_and_bar_unless_told_otherwise(tmp_path):
    common = ["fit", f"--trainer.default_root_dir={tmp_path}", "--wandb=false"]
    cli = build_cli(prepare_argv(common)[1:], run=False)
    assert type(cli.trainer.profiler) is NoProfiler
    assert [type(c) for c in cli.trainer.callbacks].count(TimedProgressBar) == 1
    assert cli.trainer.log_every_n_steps == 50
    cli = build_cli(prepare_argv([*common, "--trainer.profiler=simple"])[1:], run=False)
    assert isinstance(cli.trainer.profiler, SimpleProfiler)


def test_no_profiler_hands_back_one_reusable_context():
    profiler = NoProfiler()
    with profiler.profile("a") as outer, profiler.profile("b"):
        pass
    assert outer is None
    assert profiler.profile("a") is profiler.profile("c")
    assert profiler.summary() == ""


def test_a_batch_on_the_device_is_passed_on_and_any_other_is_moved():
    module = ImageClassifier("lenet_300_100")
    batch = (torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))
    assert module.transfer_batch_to_device(batch, torch.device("cpu"), 0) is batch
    moved = module.transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert [t.device.type for t in moved] == ["meta", "meta"]
    nested = {"x": batch[0], "y": [batch[1]]}
    moved = module.transfer_batch_to_device(nested, torch.device("meta"), 0)
    assert moved["x"].is_meta and moved["y"][0].is_meta


def test_the_fast_attribute_path_keeps_module_registration():
    module = ImageClassifier("lenet_300_100")
    module._current_fx_name = "training_step"
    assert module._current_fx_name == "training_step"
    assert "_current_fx_name" not in module._modules
    module.extra = torch.nn.Linear(2, 2)  # every other name still goes through nn.Module
    assert "extra" in module._modules
    module._current_fx_name = None
    assert module._current_fx_name is None


def test_sample_mean_gives_torchmetrics_loss_mean_and_top_k_accuracy():
    torch.manual_seed(0)
    ours = {"loss": SampleMean(), "top1": SampleMean(), "top5": SampleMean()}
    theirs = {
        "loss": MeanMetric(),
        "top1": MulticlassAccuracy(10, average="micro"),
        "top5": MulticlassAccuracy(10, top_k=5, average="micro"),
    }
    for size in (32, 32, 7):
        logits, y = torch.randn(size, 10), torch.randint(0, 10, (size,))
        loss = torch.nn.functional.cross_entropy(logits, y)
        ours["loss"].update(loss * size, size)
        theirs["loss"].update(loss.expand(size))
        ours["top1"].update((logits.argmax(1) == y).sum(), size)
        ours["top5"].update(logits.topk(5, 1).indices.eq(y[:, None]).any(1).sum(), size)
        theirs["top1"].update(logits, y)
        theirs["top5"].update(logits, y)
        batch_value = SampleMean()(loss * size, size)
        assert batch_value == pytest.approx(float(loss))
    for name in ours:
        assert float(ours[name].compute()) == pytest.approx(float(theirs[name].compute())), name
    assert float(ours["top1"].compute()) != float(ours["top5"].compute())
    nan = SampleMean()
    nan.update(torch.tensor(float("nan")) * 4, 4)
    nan.update(torch.tensor(1.0) * 4, 4)
    assert torch.isnan(nan.compute())
