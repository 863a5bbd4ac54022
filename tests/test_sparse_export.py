"""``sparsify export --format sparse``: non-zeros and a packed bitmask in a safetensors file that
safetensors alone reads; ``read_sparse`` gives back the exact dense state dict."""

import json
import textwrap

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file
from safetensors.torch import save_file

from sparsify import sparse_safetensors
from sparsify.app.export import main
from sparsify.export import read_sparse
from sparsify.masks import magnitude_prune
from sparsify.models import create_model
from sparsify.reparam import add_masks, collapse
from sparsify.sparse_safetensors import pack_bits, unpack_bits, write_sparse


def pruned_state(sparsity: float) -> dict:
    model = create_model("cnn_digits", num_classes=10)
    add_masks(model)
    magnitude_prune(model, sparsity)
    return collapse(model).state_dict()


def test_round_trip_is_exact_in_the_state_dicts_order(tmp_path):
    state = pruned_state(0.9)
    state["model.odd"] = torch.tensor([[0.0, -0.0, 0.0], [float("nan"), 1.5, 0.0]])
    state["half"] = torch.zeros(37, dtype=torch.float16)  # bits of a partial last byte
    state["half"][[0, 36]] = 1
    state["steps"] = torch.tensor(7)  # integers stay as they are
    path = write_sparse(state, tmp_path / "m.sparse.safetensors")
    back = read_sparse(path)
    assert list(back) == list(state)
    for key, tensor in state.items():
        assert back[key].dtype == tensor.dtype and back[key].shape == tensor.shape, key
        assert torch.equal(back[key], tensor) or key == "model.odd", key
    assert torch.equal(back["model.odd"].isnan(), state["model.odd"].isnan())
    assert back["model.odd"][1, 1] == 1.5 and torch.all(back["model.odd"][0] == 0)
    assert "model.odd::bitmask" in load_file(str(path))  # 4 of 6 zero: stored sparse


def test_bits_pack_like_numpy_little_endian():
    bits = torch.rand(1001, generator=torch.Generator().manual_seed(0)) < 0.3
    packed = pack_bits(bits)
    assert np.array_equal(packed.numpy(), np.packbits(bits.numpy(), bitorder="little"))
    assert torch.equal(unpack_bits(packed, bits.numel()), bits)


def test_the_documented_numpy_reader_needs_only_safetensors(tmp_path, monkeypatch):
    """The reader in ``sparsify.sparse_safetensors``' docstring, run as it stands there, in a
    namespace of its own (its imports: safetensors and numpy)."""
    state = pruned_state(0.95)
    monkeypatch.chdir(tmp_path)
    write_sparse(state, "model.sparse.safetensors")
    doc = sparse_safetensors.__doc__
    reader = textwrap.dedent(doc[doc.index("    import json") :])
    namespace = {}
    exec(reader, namespace)
    read, shapes = namespace["state"], namespace["shapes"]
    assert set(read) == set(state) and shapes  # the conv and linear weights went sparse
    for key, tensor in state.items():
        assert np.array_equal(read[key], tensor.numpy()), key


@pytest.mark.parametrize("sparsity", [0.9, 0.99])
def test_file_is_a_fraction_of_the_dense_safetensors(tmp_path, sparsity):
    """Float32 weights: 0.1 · 4 + 1/8 bytes for 4 at 90 %; batch-norm and biases stay dense."""
    state = pruned_state(sparsity)
    dense_path, sparse_path = tmp_path / "dense.safetensors", tmp_path / "sparse.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(dense_path))
    write_sparse(state, sparse_path)
    ratio = sparse_path.stat().st_size / dense_path.stat().st_size
    assert ratio <= {0.9: 0.2, 0.99: 0.1}[sparsity], ratio


def test_export_command_writes_the_sparse_file(pruned_checkpoint, tmp_path):
    paths = main([str(pruned_checkpoint), "--out", str(tmp_path / "out"), "--format", "sparse"])
    assert paths["sparse"].name == "model.sparse.safetensors"
    plain = torch.load(paths["state_dict"])["state_dict"]
    back = read_sparse(paths["sparse"])
    assert list(back) == list(plain)
    assert all(torch.equal(back[k], plain[k]) for k in plain)
    with safe_open(str(paths["sparse"]), "pt") as f:
        assert json.loads(f.metadata()["sparsify"])["sparsity"] == pytest.approx(0.9, abs=0.01)
    model = create_model("cnn_digits", num_classes=10)
    model.load_state_dict(back)  # strict: the plain network's keys
