"""Hugging Face transformers models held by a user's LightningModule: every sparsify callback on
a tiny GPT-2 (``Conv1D`` layers, weight in × out, head tied to the embedding) and a tiny Llama
(``nn.Linear``, untied head); layer selection, ERK, PaI scores, collapse and
``save_pretrained`` / ``from_pretrained``."""

import lightning as L
import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

from hf_models import (  # noqa: E402
    MODELS,
    PRUNABLE,
    CausalLM,
    lm_loss,
    tiny_gpt2,
    token_data,
    token_loaders,
)
from transformers.pytorch_utils import Conv1D  # noqa: E402

from helpers import RecordGroupOption  # noqa: E402
from sparsify import (  # noqa: E402
    collapse,
    layer_densities,
    layer_masks,
    magnitude_prune,
    pointwise_factors,
    prune_at_init,
    reparametrize,
    sparsity_report,
)
from sparsify.callbacks import (  # noqa: E402
    ACDC,
    ContinuousSparsification,
    HAMStep,
    L1Penalty,
    MagnitudePruning,
    PILoT,
    PruneAtEnd,
    PruneAtInit,
    RandomStateCheckpoint,
    Reparametrize,
    RiGL,
    SignIn,
    SignTransfer,
    SoftThresholdReparametrization,
    SparsityMonitor,
    WeightDecaySwitchOff,
)
from sparsify.export import SparseLinear, to_sparse  # noqa: E402
from sparsify.optim import HAM  # noqa: E402
from sparsify.reparam import Mask, prunable_layers, weight_parametrization  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def fit(tmp_path, module, callbacks, max_epochs=3, **kwargs):
    kwargs = {"logger": False, "enable_checkpointing": False, **kwargs}
    trainer = L.Trainer(
        max_epochs=max_epochs, callbacks=callbacks, default_root_dir=tmp_path,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
        num_sanity_val_steps=0, limit_val_batches=1, **kwargs,
    )  # fmt: skip
    trainer.fit(module, *token_loaders())
    return trainer


def selected(module) -> set[str]:
    return {name for name, _ in prunable_layers(module)}


def masked(module) -> set[str]:
    return set(layer_masks(module))


def kept_fraction_is(module, sparsity, layers):
    """Sparsity over ``layers`` equals ``sparsity`` to one weight per layer."""
    total = sum(module.get_submodule(n).weight.numel() for n in layers)
    assert sparsity_report(module)["global"] == pytest.approx(sparsity, abs=len(layers) / total)


def assert_embeddings_dense_and_tie_kept(module, name):
    lm = module.model
    embedding = lm.get_input_embeddings()
    assert "weight" in embedding._parameters and weight_parametrization(embedding) is None
    if name == "gpt2":
        assert lm.lm_head.weight is lm.transformer.wte.weight


@pytest.mark.parametrize("name", MODELS)
def test_prunable_layers_are_the_linear_maps_without_embeddings_or_tied_head(name):
    module = CausalLM(MODELS[name]())
    assert sorted(selected(module)) == sorted(PRUNABLE[name])
    if name == "gpt2":
        assert all(isinstance(module.get_submodule(n), Conv1D) for n in PRUNABLE[name])


def test_reparametrized_conv1d_computes_the_same_function_and_masks_exactly():
    module = CausalLM(tiny_gpt2()).eval()
    x = token_data()[:4][0]
    before = module(x)
    names = reparametrize(module, beta=1.0)
    assert sorted(n.removesuffix(".weight") for n in names) == sorted(PRUNABLE["gpt2"])
    torch.testing.assert_close(module(x), before, atol=1e-5, rtol=1e-5)
    for _, m, w in pointwise_factors(module):
        torch.testing.assert_close(m**2 - w**2, torch.ones_like(m))
    magnitude_prune(module, 0.7)
    kept_fraction_is(module, 0.7, PRUNABLE["gpt2"])
    # The masked model is a plain GPT-2 whose Conv1D weights (in × out) are the masked θ.
    plain = tiny_gpt2().eval()
    plain.load_state_dict(collapse(module.model).state_dict())
    assert all(weight_parametrization(layer) is None for layer in plain.modules())
    c_attn = plain.transformer.h[0].attn.c_attn
    assert c_attn.weight.shape == (32, 96) and float((c_attn.weight == 0).float().mean()) > 0.3
    torch.testing.assert_close(plain(x).logits, module(x))
    assert_embeddings_dense_and_tie_kept(module, "gpt2")


def test_erk_density_of_a_conv1d_is_that_of_the_linear_computing_the_same_map():
    transposed = nn.Sequential(Conv1D(48, 16), nn.Linear(48, 8))  # Conv1D(nf=out, nx=in)
    linear = nn.Sequential(nn.Linear(16, 48), nn.Linear(48, 8))
    assert transposed[0].weight.shape == (16, 48) and linear[0].weight.shape == (48, 16)
    assert layer_densities(transposed, 0.8, "erk") == layer_densities(linear, 0.8, "erk")


@pytest.mark.parametrize("score", ["random", "magnitude", "snip", "grasp", "synflow"])
@pytest.mark.parametrize("name", MODELS)
def test_pai_scores_mask_language_models(name, score):
    module = CausalLM(MODELS[name]())
    loader = torch.utils.data.DataLoader(token_data(16), batch_size=8)
    new = prune_at_init(
        module, 0.8, score, distribution="erk", dataloader=loader, loss_fn=lm_loss, rounds=2
    )
    assert sorted(new) == sorted(PRUNABLE[name]) == sorted(masked(module))
    kept_fraction_is(module, 0.8, PRUNABLE[name])
    densities = layer_densities(module, 0.8, "erk")
    for layer, mask in new.items():
        assert float(mask.mean()) == pytest.approx(densities[layer], abs=1 / mask.numel())
    assert_embeddings_dense_and_tie_kept(module, name)


@pytest.mark.parametrize("name", MODELS)
def test_pai_sign_in_and_pilot(tmp_path, name):
    signin, pilot = SignIn(), PILoT(alpha_init=1e-3)
    cbs = [PruneAtInit(0.8, "snip", "erk", loss_fn=lm_loss), signin, pilot]
    module = CausalLM(MODELS[name]())
    fit(tmp_path, module, cbs)
    factors = {n.removesuffix(".weight") for n, _, _ in pointwise_factors(module)}
    assert factors == set(PRUNABLE[name])
    kept_fraction_is(module, 0.8, PRUNABLE[name])
    assert signin.init_signs is not None and signin.last_rescale == 2
    assert pilot.alpha != 1e-3  # the adaptive rule ran on the logged train accuracy
    assert_embeddings_dense_and_tie_kept(module, name)


@pytest.mark.parametrize("name", MODELS)
def test_gmp_weight_decay_switch_off_l1_and_sparsity_monitor(tmp_path, name):
    record = RecordGroupOption("weight_decay")
    cbs = [
        Reparametrize(),
        MagnitudePruning(0.8, start=0.0, end=0.5, frequency=0.25),
        WeightDecaySwitchOff(at=0.5, target="pointwise"),
        L1Penalty(1e-4),
        SparsityMonitor(every_n_steps=4),
        record,
    ]
    module = CausalLM(MODELS[name]())
    logger = L.pytorch.loggers.CSVLogger(tmp_path)
    fit(tmp_path, module, cbs, logger=logger)
    kept_fraction_is(module, 0.8, PRUNABLE[name])
    pointwise = [wd for *_, wd in record.seen]  # the group of m, w, appended last
    assert pointwise[0] == 1e-3 and pointwise[-1] == 0.0
    assert all(wd == 1e-3 for *rest, _ in record.seen for wd in rest)  # others untouched
    header = (tmp_path / "lightning_logs/version_0/metrics.csv").read_text().splitlines()[0]
    assert f"sparsity/{PRUNABLE[name][0]}" in header
    assert_embeddings_dense_and_tie_kept(module, name)


class RecordMasks(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.start = {n: m.clone() for n, m in layer_masks(pl_module).items()}


@pytest.mark.parametrize("name", MODELS)
def test_rigl_with_sign_in_moves_the_masks_of_every_kind_of_layer(tmp_path, name):
    record = RecordMasks()
    cbs = [RiGL(0.8, every_n_steps=2, end=1.0, update_fraction=0.5), SignIn(), record]
    module = CausalLM(MODELS[name]())
    fit(tmp_path, module, cbs)
    kept_fraction_is(module, 0.8, PRUNABLE[name])
    final = layer_masks(module)
    for layer in PRUNABLE[name]:
        assert int(final[layer].sum()) == int(record.start[layer].sum())
    assert any(not torch.equal(final[n], record.start[n]) for n in PRUNABLE[name][:4])
    assert_embeddings_dense_and_tie_kept(module, name)


@pytest.mark.parametrize("name", MODELS)
def test_acdc_ends_compressed(tmp_path, name):
    acdc = ACDC(0.8, unit="epoch", warmup=1, length=1, final=1, last_dense=0)
    module = CausalLM(MODELS[name]())
    fit(tmp_path, module, [acdc])
    assert acdc.phase == "compressed" and masked(module) == set(PRUNABLE[name])
    kept_fraction_is(module, 0.8, PRUNABLE[name])


@pytest.mark.parametrize("name", MODELS)
def test_soft_threshold_hardened_then_pruned_at_end(tmp_path, name):
    module = CausalLM(MODELS[name]())
    fit(tmp_path, module, [SoftThresholdReparametrization(), PruneAtEnd(0.5)], max_epochs=2)
    assert masked(module) == set(PRUNABLE[name])
    assert all(
        type(weight_parametrization(module.get_submodule(n))) is Mask for n in PRUNABLE[name]
    )
    kept_fraction_is(module, 0.5, PRUNABLE[name])


@pytest.mark.parametrize("name", MODELS)
def test_continuous_sparsification_hardens_to_exact_zeros(tmp_path, name):
    module = CausalLM(MODELS[name]())
    fit(tmp_path, module, [ContinuousSparsification(temperature_final=50.0)], max_epochs=2)
    assert masked(module) == set(PRUNABLE[name])
    for layer in PRUNABLE[name]:
        parametrization = weight_parametrization(module.get_submodule(layer))
        assert type(parametrization) is Mask
        weight = module.get_submodule(layer).weight
        assert bool((weight[parametrization.mask == 0] == 0).all())
    assert 0 < sparsity_report(module)["global"] < 1


class RecordWeights(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.start = {n: layer.weight.detach().clone() for n, layer in prunable_layers(pl_module)}


@pytest.mark.parametrize("name", MODELS)
def test_sign_transfer_random_state_and_ham(tmp_path, name):
    torch.manual_seed(1)
    source = CausalLM(MODELS[name]())
    torch.save(source.state_dict(), tmp_path / "source.pt")
    torch.manual_seed(0)
    module = CausalLM(MODELS[name](), lr=0.01)
    record = RecordWeights()
    cbs = [SignTransfer(str(tmp_path / "source.pt"), sparsity=0.5), record]
    trainer = fit(tmp_path, module, cbs + [RandomStateCheckpoint(), HAMStep()], max_epochs=1)
    for layer in PRUNABLE[name]:
        start, src = record.start[layer], source.get_submodule(layer).weight
        kept = start != 0
        assert torch.equal(torch.sign(start[kept]), torch.sign(src[kept])), layer
    kept_fraction_is(module, 0.5, PRUNABLE[name])
    assert isinstance(trainer.optimizers[0], HAM)
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_collapse_then_save_pretrained_round_trips_the_sparse_model_exactly(tmp_path, name):
    module = CausalLM(MODELS[name]())
    reparametrize(module)
    prune_at_init(module, 0.8, "magnitude")
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    for x, y in torch.utils.data.DataLoader(token_data(32), batch_size=16):
        lm_loss(module(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
    lm = collapse(module.model).eval()
    lm.save_pretrained(tmp_path / "sparse")
    loaded = type(lm).from_pretrained(tmp_path / "sparse").eval()
    saved, restored = lm.state_dict(), loaded.state_dict()
    assert saved.keys() == restored.keys()
    for key in saved:
        assert torch.equal(saved[key], restored[key]), key
    prefix = len("model.")
    layers = [loaded.get_submodule(n[prefix:]) for n in PRUNABLE[name]]
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    assert zeros / sum(layer.weight.numel() for layer in layers) == pytest.approx(0.8, abs=1e-3)
    x = token_data()[:4][0]
    torch.testing.assert_close(loaded(x).logits, lm(x).logits, atol=0, rtol=0)
    if name == "gpt2":
        assert loaded.lm_head.weight is loaded.transformer.wte.weight


def test_sparse_inference_path_turns_conv1d_into_csr():
    lm = tiny_gpt2().eval()
    magnitude_prune(lm, 0.9)
    sparse = to_sparse(lm)
    c_fc = sparse.transformer.h[0].mlp.c_fc
    assert isinstance(c_fc, SparseLinear) and (c_fc.in_features, c_fc.out_features) == (32, 128)
    x = token_data()[:4][0]
    torch.testing.assert_close(sparse(x).logits, lm(x).logits, atol=1e-5, rtol=1e-5)
