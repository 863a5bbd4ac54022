import math

import pytest
import torch
from torch import nn

from sparsify import ConfigError, collapse, pointwise_factors, reparametrize
from sparsify.models import _REGISTRY, available, create_model
from sparsify.reparam import prunable_layers


def images(size, channels=3, batch=2):
    return lambda: torch.randn(batch, channels, size, size)


def tokens(vocab, length):
    return lambda: torch.randint(0, vocab, (2, length))


# Every registered model at its intended input size: (keyword arguments, input).
INPUTS = {
    "cnn_digits": ({}, images(8, channels=1)),
    "resnet20": ({}, images(32)),
    "resnet20_gray": ({}, images(28, channels=1)),
    "lenet_300_100": ({}, images(28, channels=1)),
    "lenet5": ({}, images(28, channels=1)),
    "resnet32": ({}, images(32)),
    "resnet44": ({"shortcut": "B"}, images(32)),
    "resnet56": ({}, images(32)),
    "resnet110": ({}, images(32)),
    "resnet18_cifar": ({"num_classes": 100}, images(32)),
    "resnet34_cifar": ({"num_classes": 100}, images(32)),
    "resnet50_cifar": ({"num_classes": 100}, images(32)),
    "resnet50": ({"num_classes": 1000}, images(224, batch=1)),
    "vgg16_bn": ({}, images(32)),
    "vgg19_bn": ({"num_classes": 100}, images(32)),
    "vit_tiny": ({"image_size": 32}, images(32)),
    "vit_small": ({"num_classes": 1000}, images(224, batch=1)),
    "gpt": ({"num_classes": 65, "context_length": 32}, tokens(65, 32)),
    "single_layer_attention": ({"num_classes": 16, "context_length": 16}, tokens(16, 16)),
    "linear": ({"num_classes": 1, "in_features": 100}, lambda: torch.randn(2, 100)),
    "matrix_factorization": ({"num_classes": 1, "rank": 3}, lambda: torch.randn(2, 20, 20)),
}
# deit_* are the vit_* constructors under the DeiT names: tested once.
ALIASES = {"deit_tiny": "vit_tiny", "deit_small": "vit_small"}


def test_every_registered_model_has_a_test_input():
    assert sorted(set(available()) - set(ALIASES)) == sorted(INPUTS)
    assert all(_REGISTRY[alias] is _REGISTRY[name] for alias, name in ALIASES.items())


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_forward_backward_reparametrized_and_collapse_round_trip(name):
    kwargs, make_input = INPUTS[name]
    model = create_model(name, **kwargs).eval()
    x = make_input()
    original = {k: p.detach().clone() for k, p in model.named_parameters()}

    names = reparametrize(model, beta=1.0)
    assert names, f"{name} has no prunable layer"
    out = model(x)
    (out.float() - 1).square().mean().backward()  # nonzero even where out = 0
    factors = list(pointwise_factors(model))
    assert len(factors) == len(names)
    assert all(m.grad is not None and w.grad is not None for _, m, w in factors)
    assert any(w.grad.abs().sum() > 0 for _, _, w in factors)

    collapse(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x), out.detach(), rtol=1e-6, atol=1e-6)
    collapsed = dict(model.named_parameters())
    assert collapsed.keys() == original.keys()
    for key, theta in original.items():  # m ⊙ w multiplied out is the original θ
        torch.testing.assert_close(collapsed[key], theta, rtol=1e-5, atol=1e-6)
    plain = create_model(name, **kwargs)
    plain.load_state_dict(model.state_dict())  # strict: the architecture built without sparsify


@pytest.mark.parametrize(
    "name, weights",
    [
        ("lenet_300_100", 784 * 300 + 300 * 100 + 100 * 10),  # 266,200
        ("lenet5", 20 * 1 * 5 * 5 + 50 * 20 * 5 * 5 + 800 * 500 + 500 * 10),  # 430,500
    ],
)
def test_lenets_have_the_weights_of_the_pruning_papers(name, weights):
    assert weights == {"lenet_300_100": 266_200, "lenet5": 430_500}[name]
    model = create_model(name)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert sum(m.weight.numel() for m in layers) == weights
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_resnet20_gray_is_resnet20_with_one_input_channel():
    gray, rgb = create_model("resnet20_gray", num_classes=7), create_model("resnet20")
    assert gray.conv1.in_channels == 1
    assert gray(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    gray_shapes = [p.shape for n, p in gray.named_parameters() if n not in ("conv1.weight",)]
    rgb_shapes = [p.shape for n, p in rgb.named_parameters() if n not in ("conv1.weight",)]
    assert gray_shapes[:-2] == rgb_shapes[:-2]  # all but conv1 and the 7-class head


def test_cifar_stem_resnets_keep_32_pixel_resolution_in_the_first_stage():
    model = create_model("resnet18_cifar", num_classes=100)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    features = model.layer1(model.relu(model.bn1(model.conv1(torch.randn(1, 3, 32, 32)))))
    assert features.shape[-2:] == (32, 32)


def test_kaiming_normal_init_is_the_default_and_default_is_selectable():
    model = create_model("resnet20")
    conv = model.layer3[0].conv2.weight  # 64 × 64 × 3 × 3: std sqrt(2 / fan_out)
    expected = math.sqrt(2 / (conv.shape[0] * 9))
    assert conv.std().item() == pytest.approx(expected, rel=0.05)
    # PyTorch's own: kaiming_uniform(a=√5), std 1/sqrt(3·fan_in)
    torch_default = create_model("resnet20", init="default").layer3[0].conv2.weight
    assert torch_default.std().item() < 0.7 * expected
    with pytest.raises(ConfigError, match="init='xavier' is invalid"):
        create_model("vgg16_bn", init="xavier")


def test_vit_patch_size_follows_the_image_size():
    small = create_model("deit_tiny", image_size=32)
    assert small.patch_embed.kernel_size == (4, 4) and small.pos_embed.shape[1] == 8 * 8 + 1
    large = create_model("deit_small", num_classes=1000)
    assert large.patch_embed.kernel_size == (16, 16) and large.pos_embed.shape[1] == 14 * 14 + 1
    with pytest.raises(ConfigError, match="patch_size=5 is invalid"):
        create_model("vit_tiny", image_size=32, patch_size=5)
    with pytest.raises(ConfigError, match="image_size=32 is invalid"):
        small(torch.randn(1, 3, 64, 64))


def test_transformer_projections_and_mlps_are_prunable_embeddings_and_norms_are_not():
    model = create_model("gpt", num_classes=32, depth=2, context_length=8)
    layers = [name for name, _ in prunable_layers(model)]
    per_block = ["attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2"]
    assert layers == [f"blocks.{i}.{n}" for i in range(2) for n in per_block] + ["head"]
    vit = [name for name, _ in prunable_layers(create_model("vit_tiny", image_size=32))]
    assert vit[0] == "patch_embed" and vit[-1] == "head" and len(vit) == 2 + 12 * 6
    # Embeddings become prunable when named.
    names = reparametrize(model, include=[nn.Linear, "tok_emb"])
    assert "tok_emb.weight" in names and "pos_emb.weight" not in names


def test_gpt_is_causal_and_tied_head_reuses_the_embedding():
    model = create_model("gpt", num_classes=20, context_length=10, depth=2).eval()
    x = torch.randint(0, 20, (1, 10))
    changed = x.clone()
    changed[0, 6] = (x[0, 6] + 1) % 20
    with torch.no_grad():
        a, b = model(x), model(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    tied = create_model("gpt", num_classes=20, context_length=10, tie_weights=True)
    assert tied.head is None and tied(x).shape == (1, 10, 20)
    assert "head" not in dict(prunable_layers(tied))
    with pytest.raises(ConfigError, match="context_length=10 is invalid"):
        tied(torch.randint(0, 20, (1, 11)))


def test_single_layer_attention_has_one_block_without_mlp():
    model = create_model("single_layer_attention", num_classes=16, context_length=16)
    assert len(model.blocks) == 1 and model.blocks[0].mlp is None
    assert [n for n, _ in prunable_layers(model)] == [
        "blocks.0.attn.q",
        "blocks.0.attn.k",
        "blocks.0.attn.v",
        "blocks.0.attn.proj",
        "head",
    ]


def test_linear_model_reparametrized_is_the_diagonal_network_u_times_v():
    model = create_model("linear", num_classes=1, in_features=5)
    assert torch.equal(model.weight, torch.zeros(1, 5))
    reparametrize(model, beta=1.0)
    (_, u, v), *_ = pointwise_factors(model)
    assert torch.equal(u, torch.ones(1, 5)) and torch.equal(v, torch.zeros(1, 5))


def test_matrix_factorization_predicts_the_inner_product_with_u_v_transposed():
    model = create_model("matrix_factorization", num_classes=1, rows=4, cols=3, rank=2)
    a = torch.randn(5, 4, 3)
    x = model.left.weight @ model.right.weight
    torch.testing.assert_close(model(a), (a * x).sum((1, 2)))
    torch.testing.assert_close(model(a.flatten(1)), model(a))
    with pytest.raises(ConfigError, match="num_classes=10 is invalid for matrix_factorization"):
        create_model("matrix_factorization")
