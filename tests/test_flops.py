"""FLOPs counted from the real model (``sparsify.flops``) against hand counts.

The convention is RigL's (Evci et al. 2020; google-research/rigl ``rigl/sparse_utils.py``,
``get_stats``): the multiply-adds of each conv and linear layer per example, each scaled by
the layer's density, two FLOPs per multiply-add; training is 3 × inference per step. The hand
counts below are derived from the layer shapes, not from the code under test.
"""

import re

import pytest
import torch
from torch import nn

from helpers import UserModule, loaders, trainer
from sparsify.app.summary import flops_summary, format_summary, summarize
from sparsify.callbacks import FlopsMonitor, PruneAtEnd
from sparsify.datamodules import DigitsDataModule
from sparsify.errors import ConfigError
from sparsify.flops import NonzeroCounts, count_flops, flops, record_positions
from sparsify.lightning.module import ImageClassifier
from sparsify.masks import magnitude_prune
from sparsify.reparam import add_masks, layer_masks, reparametrize
from sparsify.soft_masks import soft_threshold


def lenet5() -> nn.Module:
    """Caffe's LeNet-5 on 28 × 28: conv 5×5 (1 → 20) → 24², pool → 12², conv 5×5 (20 → 50) → 8²,
    pool → 4², fc 800 → 500, fc 500 → 10."""
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(800, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )


# multiply-adds per example, by hand: output positions × weights per output
LENET5_MACS = {
    "0": 20 * 24 * 24 * (1 * 5 * 5),  # 288,000
    "3": 50 * 8 * 8 * (20 * 5 * 5),  # 1,600,000
    "7": 800 * 500,  # 400,000
    "9": 500 * 10,  # 5,000
}


def test_lenet5_matches_the_hand_count_per_example():
    counted = count_flops(lenet5(), torch.randn(3, 1, 28, 28))
    assert sum(LENET5_MACS.values()) == 2_293_000
    assert counted["dense_inference_flops"] == 2 * 2_293_000
    assert counted["inference_flops"] == 2 * 2_293_000  # random weights: no zeros
    assert counted["layers"] == {k: (2.0 * v, 2.0 * v) for k, v in LENET5_MACS.items()}


class BasicBlock(nn.Module):
    """A ResNet basic block that halves the resolution (3×3 stride 2, padding 1), its second
    convolution grouped, and a 1×1 stride-2 projection shortcut."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=2, dilation=2, groups=4, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.shortcut = nn.Conv2d(16, 32, 1, stride=2, bias=False)

    def forward(self, x):
        out = self.bn1(self.conv1(x)).relu()
        return (self.bn2(self.conv2(out)) + self.shortcut(x)).relu()


def test_resnet_block_with_stride_groups_and_dilation():
    # 32 × 32 input → 16 × 16 everywhere (stride 2; dilation 2 with padding 2 keeps 16)
    hand = {
        "conv1": 32 * 16 * 16 * (16 * 3 * 3),
        "conv2": 32 * 16 * 16 * (32 // 4 * 3 * 3),  # each output sees 8 of the 32 channels
        "shortcut": 32 * 16 * 16 * 16,
    }
    block = BasicBlock().train()
    running_mean = block.bn1.running_mean.clone()
    counted = count_flops(block, torch.randn(2, 16, 32, 32))
    assert counted["layers"] == {k: (2.0 * v, 2.0 * v) for k, v in hand.items()}
    assert torch.equal(block.bn1.running_mean, running_mean)  # counted in eval mode
    assert block.training  # and the mode given back


def test_half_masked_layer_costs_half_its_multiply_adds():
    model = lenet5()
    add_masks(model)
    mask = layer_masks(model)["7"]
    mask[:, ::2] = 0  # half the 800 × 500 weights
    counted = count_flops(model, torch.randn(1, 1, 28, 28))
    assert counted["layers"]["7"] == (2.0 * 400_000 / 2, 2.0 * 400_000)
    assert counted["inference_flops"] == 2 * (2_293_000 - 200_000)


def test_density_is_that_of_the_effective_weight_m_times_w():
    model = nn.Sequential(nn.Linear(10, 4, bias=False))
    reparametrize(model)
    with torch.no_grad():
        model[0].parametrizations.weight.original0[0].zero_()  # m = 0 on row 0: θ = 0 there
    counted = count_flops(model, torch.randn(5, 10))
    assert counted["layers"]["0"] == (2.0 * 30, 2.0 * 40)


def test_linear_layers_inside_attention_and_per_token():
    """``nn.MultiheadAttention`` multiplies its packed q, k, v weights and out_proj without
    calling their modules; each is counted once per token, the attention products not at all."""
    width, tokens = 8, 5
    model = nn.MultiheadAttention(width, num_heads=2, batch_first=True)
    with torch.no_grad():
        model.in_proj_weight[:width].zero_()  # q projection all zero
    x = torch.randn(3, tokens, width)
    counted = count_flops(model, x, x, x)
    per_token = width * width
    assert counted["layers"] == {
        "q": (0.0, 2.0 * tokens * per_token),
        "k": (2.0 * tokens * per_token,) * 2,
        "v": (2.0 * tokens * per_token,) * 2,
        "out_proj": (2.0 * tokens * per_token,) * 2,
    }
    assert count_flops(model, x, key=x, value=x) == counted  # key and value by name
    sequence = nn.Sequential(nn.Linear(width, 3 * width))  # a linear layer on tokens
    counted = count_flops(sequence, x)
    assert counted["inference_flops"] == 2.0 * tokens * width * 3 * width


def test_hf_conv1d_stores_weights_in_by_out():
    transformers = pytest.importorskip("transformers")
    from transformers.pytorch_utils import Conv1D

    assert transformers
    layer = Conv1D(nf=12, nx=6)  # y = x W + b, W of shape (6, 12)
    counted = count_flops(nn.Sequential(layer), torch.randn(2, 7, 6))
    assert counted["dense_inference_flops"] == 2.0 * 7 * 6 * 12


def test_a_shared_layer_is_counted_at_every_call():
    layer = nn.Linear(4, 4)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    with record_positions(model, batch_size=2) as uses:
        model(torch.randn(2, 4))
    assert [u.positions for u in uses] == [1.0, 1.0]
    assert flops(uses) == 2 * 2 * 16


def test_training_flops_of_a_run_dense_then_pruned(tmp_path):
    """3 dense epochs, then half of every layer's weights masked (``PruneAtEnd`` at the start of
    the last epoch): training costs (3 · 1 + 1 · 0.5) / 4 of dense training, as RigL counts a
    gradual-pruning run (each step at the density it trains with)."""
    monitor = FlopsMonitor()
    prune = PruneAtEnd(0.5, scope="layer", finetune_epochs=1, monitor="val/acc")
    fit = trainer(tmp_path, [prune, monitor], max_epochs=4, enable_checkpointing=False)
    fit.fit(UserModule(), *loaders())  # 96 examples, batches of 16: the same every epoch
    dense = 2 * (8 * 32 + 32 * 3)  # per example: fc 8 → 32, fc 32 → 3
    assert monitor.inference_flops() == (dense / 2, dense)
    assert monitor.train_flops() == pytest.approx((3 + 0.5) / 4, abs=1e-12)
    summary = flops_summary(fit)
    assert summary == {
        "inference_flops": dense / 2,
        "dense_inference_flops": dense,
        "train_flops": monitor.train_flops(),
    }
    text = format_summary(
        {"sparsity": 0.5, "layer_density": {}, "checkpoint": "c", **summary, "summary_file": "s"}
    )
    assert re.search(r"inference FLOPs per example +352 \(0.5000 of dense 704\)", text)
    assert re.search(r"training FLOPs, of dense training +0.8750", text)

    resumed = FlopsMonitor()
    resumed.load_state_dict(monitor.state_dict())
    assert resumed.train_flops() == monitor.train_flops()


def test_flops_monitor_refuses_a_bad_period():
    with pytest.raises(ConfigError, match="every_n_steps=0 is invalid"):
        FlopsMonitor(every_n_steps=0)


def test_nonzero_counts_follow_every_mask_change_and_soft_masks():
    """Cached counts are counted again when a mask changes in place or is replaced, a soft mask
    at every call, and a weight zeroed in place without a mask only at a full count."""
    masked, soft, plain = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
    model = nn.Sequential(masked, soft, plain)
    reparametrize(nn.Sequential(masked))
    soft_threshold(nn.Sequential(soft), s_init=-20.0)
    with record_positions(model, batch_size=1) as uses:
        model(torch.randn(1, 4))
    counts = NonzeroCounts(uses)
    assert float(counts.flops()) == flops(uses) == 2 * 48
    magnitude_prune(nn.Sequential(masked), 0.5, scope="layer")  # the mask changes in place
    assert float(counts.flops()) == flops(uses) == 2 * 40
    with torch.no_grad():
        soft.parametrizations.weight.original.data[:2] = 0  # a soft mask's θ moves by itself
        plain.weight[:1] = 0
    assert float(counts.flops()) == 2 * 32  # the plain layer is not counted again yet
    assert float(counts.flops(full=True)) == flops(uses) == 2 * 28


def test_the_summary_gives_the_final_models_validation_accuracy(tmp_path):
    """``val_acc`` is the accuracy of the model as it ends (pruned when training ends), not the
    last value logged during training, so a grid can be tuned on it."""
    data = DigitsDataModule(batch_size=64)
    module = ImageClassifier("cnn_digits", num_classes=10, lr=0.05)
    prune = PruneAtEnd(0.95, finetune_epochs=0)
    fit = trainer(tmp_path, [prune], max_epochs=2, limit_train_batches=5)
    fit.fit(module, datamodule=data)
    logged = float(fit.callback_metrics["val/acc"])
    summary = summarize(fit, module, data)
    module.eval()
    with torch.no_grad():
        hits = [(module(x).argmax(1) == y).sum() for x, y in data.val_dataloader()]
        total = sum(len(y) for _, y in data.val_dataloader())
    assert summary["val_acc"] == pytest.approx(float(sum(hits)) / total, abs=1e-6)
    assert summary["val_acc"] != logged and summary["sparsity"] == pytest.approx(0.95, abs=1e-3)
