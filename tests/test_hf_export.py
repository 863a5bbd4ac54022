"""`sparsify export` of a checkpoint whose module holds a transformers model: safetensors files
that load into the plain architecture, and the model's own ``save_pretrained``."""

import json

import lightning as L
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from hf_models import PRUNABLE, TinyCausalLM, tiny_gpt2, token_data, token_loaders  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import GPT2LMHeadModel  # noqa: E402

from sparsify.app.export import main  # noqa: E402
from sparsify.callbacks import PruneAtInit, SignIn  # noqa: E402
from sparsify.errors import ConfigError  # noqa: E402
from sparsify.export import export, load_module  # noqa: E402

LAYERS = [name.removeprefix("model.") for name in PRUNABLE["gpt2"]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """GPT-2 trained one epoch as m ⊙ w under a magnitude mask at 80 % (PaI + Sign-In)."""
    root = tmp_path_factory.mktemp("fit")
    trainer = L.Trainer(
        max_epochs=1, callbacks=[PruneAtInit(0.8, "magnitude"), SignIn()], default_root_dir=root,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1,
    )  # fmt: skip
    trainer.fit(TinyCausalLM("gpt2"), *token_loaders())
    trainer.save_checkpoint(root / "final.ckpt")
    return root / "final.ckpt"


def logits(model, x):
    out = model(x)
    return out if isinstance(out, torch.Tensor) else out.logits


def test_safetensors_hold_the_plain_state_dict_masks_and_metadata(checkpoint, tmp_path):
    paths = main([str(checkpoint), "--out", str(tmp_path), "--format", "safetensors"])
    plain = tiny_gpt2().eval()
    plain.load_state_dict(load_file(paths["safetensors"]))  # strict: no sparsify keys
    x = token_data()[:4][0]
    trained = load_module(checkpoint)
    assert any(k.endswith("original0") for k in trained.state_dict())  # it was m ⊙ w
    torch.testing.assert_close(logits(plain, x), logits(trained, x))
    masks = load_file(paths["masks"])
    assert sorted(masks) == sorted(LAYERS) and all(m.dtype == torch.bool for m in masks.values())
    for name, mask in masks.items():
        weight = plain.get_submodule(name).weight
        assert bool((weight[~mask] == 0).all()) and bool((weight[mask] != 0).all()), name
    with safe_open(paths["safetensors"], "pt") as f:
        info = json.loads(f.metadata()["sparsify"])
    assert info["hyper_parameters"]["name"] == "gpt2"
    assert info["sparsity"] == pytest.approx(0.8, abs=1e-3)


def test_pretrained_format_loads_with_from_pretrained(checkpoint, tmp_path):
    paths = export(checkpoint, tmp_path, format="pretrained")
    loaded = GPT2LMHeadModel.from_pretrained(paths["pretrained"]).eval()
    exported = torch.load(paths["state_dict"])["state_dict"]
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, exported[key]), key
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    x = token_data()[:4][0]
    torch.testing.assert_close(loaded(x).logits, logits(load_module(checkpoint), x))


def test_pretrained_format_of_a_network_without_save_pretrained_writes_nothing(tmp_path):
    from helpers import UserModule

    module = UserModule()
    module.hparams["_class_path"] = "helpers.UserModule"
    trainer = L.Trainer(max_epochs=0, logger=False, enable_checkpointing=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "user.ckpt")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="format='pretrained' is invalid for a UserModule"):
        export(tmp_path / "user.ckpt", out, format="pretrained")
    assert not out.exists()
