"""SynFlow's forward and backward in float32 without overflow, on a rescaled trace of the network.

SynFlow scores the linearized network f(x; |θ|) on an all-ones input: R = sum(f), score
|θ ⊙ ∂R/∂θ| (Tanaka et al., NeurIPS 2020). R grows like the product of the layers' gains
(about 1.4e73 for ResNet-50 at 224 px), beyond float32's 3.4e38, so ``sparsify.pai`` used to
score in float64, whose convolutions take a slow path on CPU.

A network built only of positively homogeneous operations (convolutions, linear maps,
BatchNorm in eval mode, ReLU, pooling, additions, concatenation, reshapes) with biases b
satisfies f(x / c; b / c) = f(x; b) / c for every c > 0. Here the network is traced
(``torch.fx``) and, at every cut point (a tensor through which all of the computation
passes: the residual stream between two blocks of a ResNet, every layer of a chain), its
activation a is divided by c = 2^round(log2 max a), and every bias after it by the product C
of the factors so far. Then every later activation is the true one divided by C, R becomes
R / C_total, and the gradient reaching any earlier tensor is the true one divided by the
factors after it: every score |θ ⊙ ∂R/∂θ| is the true score divided by the same C_total,
so their ranking is unchanged and activations, gradients and scores stay near 1. Powers of
two divide exactly, so the rescaling adds no rounding of its own.

Rescaling each layer's |W| instead would not do: across a residual connection the branch and
the shortcut would be scaled by different products, and the sum would no longer be scaled by
one factor. Cut points scale both by the same factor.

The linearized activations are non-negative (|θ|, |b|, a ones input), so every ReLU is the
identity and is dropped from the trace. ``homogeneous_scorer`` returns None for a network that
does not trace or uses any other operation; the caller then scores in float64.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

_LINEAR_MODULES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_RELUS = {F.relu, torch.relu, "relu", "relu_"}
_LINEAR_FUNCTIONS = {
    operator.add,
    torch.add,
    torch.cat,
    torch.flatten,
    operator.getitem,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
}
_LINEAR_METHODS = {"add", "flatten", "view", "reshape", "contiguous", "size"}


class _Scale(nn.Module):
    """The running product C of the factors of the cut points passed in this forward."""

    def __init__(self) -> None:
        super().__init__()
        self.value = None

    def divide(self, x: torch.Tensor) -> torch.Tensor:
        peak = x.detach().amax()
        c = torch.where(peak > 0, torch.exp2(torch.round(torch.log2(peak))), 1.0)
        self.value = c if self.value is None else self.value * c
        return x / c


class _Cut(nn.Module):
    def __init__(self, scale: _Scale) -> None:
        super().__init__()
        self.scale = [scale]  # a list: not a submodule of every cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale[0].divide(x)


class _BiasDivided(nn.Module):
    """``layer`` with its bias divided by the running C before it runs (its bias needs no
    gradient: only weights are scored)."""

    def __init__(self, layer: nn.Module, scale: _Scale) -> None:
        super().__init__()
        self.layer = layer
        self.scale = [scale]
        self.original = layer.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.scale[0].value
        if c is not None:
            with torch.no_grad():
                self.layer.bias.copy_(self.original / c)
        return self.layer(x)


class _ConvBatchNorm(nn.Module):
    """A convolution followed by an eval-mode BatchNorm as one convolution: weight W ⊙ d per
    output channel, d = γ / sqrt(var + eps), bias d (b − mean) + β (divided by the running C
    when it is not zero). The gradient reaching W is d times the fused weight's, so
    W ⊙ ∂R/∂W is unchanged."""

    def __init__(self, conv: nn.Module, norm: _BatchNorm, scale: _Scale) -> None:
        super().__init__()
        self.conv, self.scale = conv, [scale]
        with torch.no_grad():
            d = (norm.running_var + norm.eps).rsqrt()
            shift = -norm.running_mean * d
            if norm.affine:
                d, shift = d * norm.weight, shift * norm.weight + norm.bias
            if conv.bias is not None:
                shift = shift + conv.bias * d
        self.register_buffer("d", d.reshape(-1, *[1] * (conv.weight.dim() - 1)))
        self.shift = shift if bool(shift.any()) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shift, c = self.shift, self.scale[0].value
        if shift is not None and c is not None:
            shift = shift / c
        return self.conv._conv_forward(x, self.conv.weight * self.d, shift)


class HomogeneousScorer(nn.Module):
    """Runs the rescaled trace; ``forward`` returns the output divided by C_total."""

    def __init__(self, graph_module: fx.GraphModule, scale: _Scale) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.scale.value = None
        return self.graph_module(x)


def homogeneous_scorer(scorer: nn.Module) -> HomogeneousScorer | None:
    """The rescaled float32-safe trace of a linearized scoring copy (see the module docstring),
    sharing its parameters, or None where the network does not trace or is not built only of
    positively homogeneous operations. Call it again after changing biases or BatchNorm."""
    try:
        graph_module = fx.symbolic_trace(scorer)
    except Exception:  # any failure to trace means: score in float64 instead
        return None
    layers = dict(graph_module.named_modules())
    nodes = list(graph_module.graph.nodes)
    if sum(node.op == "placeholder" for node in nodes) != 1:
        return None
    if not all(_homogeneous(node, layers) for node in nodes):
        return None
    for node in nodes:
        if _is_relu(node, layers):
            node.replace_all_uses_with(node.args[0])
            graph_module.graph.erase_node(node)
    scale = _Scale()
    _fuse_batch_norms(graph_module, layers, scale)
    nodes = list(graph_module.graph.nodes)
    cuts = _cut_points(nodes)
    for index, node in enumerate(nodes):
        if node.op == "call_module" and getattr(layers[node.target], "bias", None) is not None:
            if any(cut < index for cut in cuts) and bool(layers[node.target].bias.any()):
                name = f"_bias_divided_{index}"
                graph_module.add_submodule(name, _BiasDivided(layers[node.target], scale))
                node.target = name
    for index in cuts:
        node = nodes[index]
        name = f"_cut_{index}"
        graph_module.add_submodule(name, _Cut(scale))
        with graph_module.graph.inserting_after(node):
            divided = graph_module.graph.call_module(name, (node,))
        others = [user for user in node.users if user is not divided]
        for user in others:
            user.replace_input_with(node, divided)
    graph_module.recompile()
    return HomogeneousScorer(graph_module, scale)


def _fuse_batch_norms(graph_module: fx.GraphModule, layers: dict, scale: _Scale) -> None:
    """Each convolution whose only user is a BatchNorm becomes one ``_ConvBatchNorm``."""
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(layers[node.target], _CONVS):
            continue
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module":
            continue
        norm = layers[users[0].target]
        if (
            not isinstance(norm, _BatchNorm)
            or norm.num_features != layers[node.target].out_channels
        ):
            continue
        name = f"_conv_batch_norm_{len(layers)}"
        fused = _ConvBatchNorm(layers[node.target], norm, scale)
        graph_module.add_submodule(name, fused)
        layers[name] = fused
        node.target = name
        users[0].replace_all_uses_with(node)
        graph_module.graph.erase_node(users[0])


def _cut_points(nodes: list[fx.Node]) -> list[int]:
    """Indices of the tensor nodes after which no earlier value is used again."""
    position = {node: index for index, node in enumerate(nodes)}
    reach = 0  # the furthest use of any value defined so far
    cuts = []
    for index, node in enumerate(nodes):
        last_use = max((position[user] for user in node.users), default=index)
        if index >= reach and node.op not in ("placeholder", "output") and _is_tensor(node):
            if node.users:
                cuts.append(index)
        reach = max(reach, last_use)
    return cuts


def _is_tensor(node: fx.Node) -> bool:
    return not (node.op == "call_method" and node.target == "size")


def _is_relu(node: fx.Node, layers: dict) -> bool:
    if node.op == "call_module":
        return isinstance(layers[node.target], nn.ReLU)
    return node.op in ("call_function", "call_method") and node.target in _RELUS


def _homogeneous(node: fx.Node, layers: dict) -> bool:
    if node.op in ("placeholder", "output"):
        return True
    if _is_relu(node, layers):
        return True
    if node.op == "call_module":
        layer = layers[node.target]
        if isinstance(layer, _BatchNorm):
            return not layer.training and layer.track_running_stats
        return isinstance(layer, _LINEAR_MODULES)
    if node.op == "call_function":
        if node.target in (operator.add, torch.add):
            return all(isinstance(arg, fx.Node) for arg in node.args) and not node.kwargs
        if node.target is F.pad:
            mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
            value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
            return mode == "constant" and not value
        return node.target in _LINEAR_FUNCTIONS
    if node.op == "call_method":
        if node.target == "add":
            return all(isinstance(arg, fx.Node) for arg in node.args) and not node.kwargs
        return node.target in _LINEAR_METHODS
    return False
