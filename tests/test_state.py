"""The sparse state (sparsify.state): the saved key layout, the factors and effective weights,
and the portable format's version: written, read, migrated from before it existed, a newer
one refused in one line."""

import os
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsify import ConfigError, magnitude_prune, reparametrize
from sparsify.reparam import add_masks, match_structure
from sparsify.state import (
    FORMAT,
    STASH,
    effective_weights,
    factor_keys,
    factors,
    mask_key,
    masked_layers,
    masked_weight_key,
    pointwise_layers,
    portable_state_dict,
    restore_state_dict,
    saved_masks,
    unmasked_weight,
)

ROOT = Path(__file__).resolve().parents[1]


def net():
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def sparse_net():
    """Layer 0 is m ⊙ w ⊙ mask, layer 2 is w ⊙ mask; both pruned."""
    torch.manual_seed(0)
    model = net()
    reparametrize(model, include=["0"])
    add_masks(model)
    magnitude_prune(model, 0.6)
    return model


def same_structure():
    model = net()
    reparametrize(model, include=["0"])
    add_masks(model)
    return model


def assert_same_state(model, other):
    own = model.state_dict()
    assert list(other.state_dict()) == list(own)
    for key, value in own.items():
        assert torch.equal(other.state_dict()[key], value), key


def old_portable_state_dict(model):
    """The portable form as sparsify wrote it before the format version existed, spelled out:
    θ under the plain key where the layer's first parametrized key was, and the layer's own
    entries under ``"plain"`` and ``"state"`` of ``_metadata[layer]["sparsify"]``, no
    ``"format"``."""
    saved = model.state_dict()
    out = OrderedDict()
    metadata = OrderedDict(saved._metadata)
    for name in ("0", "2"):
        state = {k[len(name) + 1 :]: v for k, v in saved.items() if k.startswith(f"{name}.param")}
        metadata[name] = {**metadata[name], STASH: {"plain": ["weight"], "state": state}}
    for key, value in saved.items():
        name = key.split(".")[0]
        if key == f"{name}.bias":
            out[key] = value
        elif key.startswith(f"{name}.param") and f"{name}.weight" not in out:
            out[f"{name}.weight"] = model.get_submodule(name).weight.detach().clone()
    out._metadata = metadata
    return out


def test_the_key_layout_names_the_saved_factors_masks_and_weights():
    model = sparse_net()
    saved = model.state_dict()
    m, w = factors(model[0])
    assert [torch.equal(saved[k], t) for k, t in zip(factor_keys("0"), (m, w))] == [True, True]
    assert torch.equal(saved[masked_weight_key("2")], unmasked_weight(model[2]))
    assert torch.equal(saved[mask_key("0")], model[0].parametrizations.weight[0].mask)
    assert pointwise_layers(saved) == ["0"] and masked_layers(saved) == ["2"]
    assert set(saved_masks(saved)) == {"0", "2"}
    theta = effective_weights(saved)
    assert set(theta) == {"0", "2"}
    for name in theta:
        assert torch.equal(theta[name], model.get_submodule(name).weight)  # θ of the forward
    plain = net()
    assert torch.equal(effective_weights(plain.state_dict())["0"], plain[0].weight)


def test_the_portable_form_carries_its_format_version(tmp_path):
    model = sparse_net()
    portable = portable_state_dict(model, model.state_dict())
    assert FORMAT == 1
    assert [portable._metadata[n][STASH]["format"] for n in ("0", "2")] == [FORMAT, FORMAT]
    torch.save({"state_dict": portable}, tmp_path / "sparse.ckpt")
    read = torch.load(tmp_path / "sparse.ckpt", weights_only=True)["state_dict"]
    assert read._metadata["0"][STASH]["format"] == FORMAT
    again = same_structure()
    again.load_state_dict(read)
    assert_same_state(model, again)
    plain = net()
    plain.load_state_dict(read)  # strict: the plain module ignores the metadata
    assert torch.equal(plain[0].weight, model[0].weight)


def test_a_state_written_before_the_version_loads_as_it_did(tmp_path):
    """Format 0 (no version key) is today's layout: the current writer's output less the
    version is exactly the old form, which loads everywhere the current one does."""
    model = sparse_net()
    old = old_portable_state_dict(model)
    current = portable_state_dict(model, model.state_dict())
    assert list(current) == list(old)
    for name in ("0", "2"):
        stash = dict(current._metadata[name][STASH])
        assert stash.pop("format") == FORMAT
        assert stash.keys() == old._metadata[name][STASH].keys()
        assert stash["plain"] == old._metadata[name][STASH]["plain"]
        assert stash["state"].keys() == old._metadata[name][STASH]["state"].keys()
    torch.save({"state_dict": old}, tmp_path / "old.ckpt")
    read = torch.load(tmp_path / "old.ckpt", weights_only=True)["state_dict"]
    assert "format" not in read._metadata["0"][STASH]
    again = same_structure()
    again.load_state_dict(read)
    assert_same_state(model, again)
    restored = restore_state_dict(read)
    assert list(restored) == list(model.state_dict())
    fresh = net()
    match_structure(fresh, read)  # a checkpoint's structure, read from the old form
    fresh.load_state_dict(read)
    assert_same_state(model, fresh)
    plain = net()
    plain.load_state_dict(read)
    assert torch.equal(plain[2].weight, model[2].weight)


@pytest.mark.parametrize("version", [FORMAT + 1, "1"])
def test_a_newer_or_unknown_format_is_refused_in_one_line(version):
    model = sparse_net()
    portable = portable_state_dict(model, model.state_dict())
    portable._metadata["0"][STASH]["format"] = version
    says = f"layer '0' has format {version!r}: this sparsify reads formats 0 to {FORMAT}"
    with pytest.raises(ConfigError, match=says):
        same_structure().load_state_dict(portable)
    with pytest.raises(ConfigError, match=says):
        restore_state_dict(portable)


def test_sparsify_export_refuses_a_newer_format_with_exit_2(tmp_path):
    model = sparse_net()
    portable = portable_state_dict(model, model.state_dict())
    portable._metadata["2"][STASH]["format"] = FORMAT + 1
    torch.save({"state_dict": portable}, tmp_path / "newer.ckpt")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sparsify", "export", str(tmp_path / "newer.ckpt")]
    command += ["--factory", "torch.nn:Identity", "--out", str(out)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"layer '2' has format {FORMAT + 1}" in lines[0] and "upgrade sparsify" in lines[0]
    assert not out.exists()


def test_only_the_state_module_knows_the_parametrize_layout():
    """The key layout and ``parametrize``'s attribute names are spelled in sparsify.state
    alone (a comment may mention them)."""
    spelled = re.compile(r"original[01]|\.parametrizations\b|\bparametrizations\.\w")
    found = []
    for folder in ("sparsify", "callbacks", "datamodules", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "state.py" and path.parent.name == "sparsify":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if spelled.search(code):
                    found.append(f"{path.relative_to(ROOT)}:{number}")
    assert found == []
