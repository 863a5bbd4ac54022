import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is faster than two on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def pruned_checkpoint(tmp_path_factory):
    """A real `sparsify fit` run, shared by the export tests: m ⊙ w, pruned to 90 % at the end
    (cnn_digits on the digits data)."""
    from sparsify.app.cli import main as fit_main

    root = tmp_path_factory.mktemp("fit")
    fit_main(
        ["fit", "--config", "method/wd_switch_off", f"--trainer.default_root_dir={root}",
         "--trainer.max_epochs=4", "--trainer.limit_train_batches=2",
         "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1", "--wandb=false",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    )  # fmt: skip
    (path,) = root.glob("lightning_logs/version_*/checkpoints/final.ckpt")
    return path
