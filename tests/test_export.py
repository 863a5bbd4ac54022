"""Export: a `sparsify fit` checkpoint collapsed to a plain model, TorchScript, the sparse
inference path, and torch.compile of a reparametrized, masked model."""

import pytest
import torch
from torch import nn

from sparsify.app.export import main
from sparsify.errors import ConfigError
from sparsify.export import SparseLinear, export, load_module, to_sparse, torchscript
from sparsify.masks import magnitude_prune
from sparsify.models import create_model
from sparsify.models.vit import VisionTransformer
from sparsify.reparam import add_masks, reparametrize


def digits_batch():
    return torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_exported_state_dict_loads_into_the_plain_architecture(pruned_checkpoint, tmp_path):
    paths = main([str(pruned_checkpoint), "--out", str(tmp_path), "--format", "none"])
    saved = torch.load(paths["state_dict"])
    plain = create_model("cnn_digits", num_classes=10)
    plain.load_state_dict(saved["state_dict"])  # strict: no parametrization keys left
    trained = load_module(pruned_checkpoint)
    assert any(k.endswith("original0") for k in trained.state_dict())  # it was m ⊙ w
    x = digits_batch()
    torch.testing.assert_close(plain.eval()(x), trained(x))
    zeros = sum(int((m == 0).sum()) for m in saved["masks"].values())
    total = sum(m.numel() for m in saved["masks"].values())
    assert zeros / total == pytest.approx(0.9, abs=0.01)
    for name, mask in saved["masks"].items():
        assert torch.all(plain.get_submodule(name).weight[mask == 0] == 0), name


def test_torchscript_outputs_equal_the_model(pruned_checkpoint, tmp_path):
    paths = export(pruned_checkpoint, tmp_path, format="torchscript")
    scripted = torch.jit.load(str(paths["torchscript"]))
    x = digits_batch()
    torch.testing.assert_close(scripted(x), load_module(pruned_checkpoint)(x))


def tiny_vit():
    torch.manual_seed(0)
    return VisionTransformer(10, image_size=16, patch_size=8, width=32, depth=2, heads=2).eval()


def test_a_network_that_does_not_script_is_traced():
    vit = tiny_vit()
    with pytest.raises(ConfigError, match="--input-shape"):
        torchscript(vit, None)
    traced = torchscript(vit, (3, 16, 16))
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(traced(x), vit(x))


def test_sparse_path_equals_the_masked_dense_model(pruned_checkpoint):
    dense = load_module(pruned_checkpoint).model
    sparse = to_sparse(dense)
    assert any(isinstance(layer, SparseLinear) for layer in sparse.modules())
    assert hasattr(dense[0], "parametrizations")  # the copy was collapsed, not the model
    x = digits_batch()
    torch.testing.assert_close(sparse(x), dense(x))


def test_sparse_path_equals_dense_on_a_transformer():
    vit = tiny_vit()
    reparametrize(vit, include=["blocks.0.*"])
    magnitude_prune(vit, 0.95)
    sparse = to_sparse(vit)
    x = torch.randn(3, 3, 16, 16)
    assert isinstance(sparse.blocks[0].mlp.fc1, SparseLinear)
    nonzero = sparse.blocks[0].mlp.fc1.weight.values().numel()
    assert nonzero < 0.2 * vit.blocks[0].mlp.fc1.weight.numel()
    torch.testing.assert_close(sparse(x), vit(x), atol=1e-5, rtol=1e-4)


def test_compiled_and_eager_outputs_match_for_a_reparametrized_masked_model():
    # backend "aot_eager" traces forward and backward like the default "inductor" but skips
    # code generation: inductor took 53 s for this model on the 2-core test machine.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
    reparametrize(net, include=["0"])
    add_masks(net)
    magnitude_prune(net, 0.7)
    x = torch.randn(5, 1, 8, 8)
    compiled = torch.compile(net, backend="aot_eager")
    eager_out, compiled_out = net(x), compiled(x)
    torch.testing.assert_close(compiled_out, eager_out)
    eager_grads = torch.autograd.grad(eager_out.square().sum(), list(net.parameters()))
    compiled_grads = torch.autograd.grad(compiled_out.square().sum(), list(net.parameters()))
    for eager, compiled_grad in zip(eager_grads, compiled_grads):
        torch.testing.assert_close(compiled_grad, eager)


def test_bad_input_fails_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        main([str(tmp_path / "missing.ckpt"), "--out", str(tmp_path)])
    not_a_run = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, not_a_run)
    with pytest.raises(ConfigError, match="is invalid: no state_dict in it"):
        export(not_a_run, tmp_path)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(2)}, "hyper_parameters": {}}, foreign)
    with pytest.raises(ConfigError, match="not a checkpoint of `sparsify fit`.*--factory"):
        export(foreign, tmp_path)
    with pytest.raises(ConfigError, match="factory='no_such_module:build' is invalid"):
        export(foreign, tmp_path, factory="no_such_module:build")
    with pytest.raises(ConfigError, match="format='tflite' is invalid"):
        export(not_a_run, tmp_path, format="tflite")
