"""Transformer blocks shared by the ViT/DeiT and GPT models (pre-norm, as in GPT-2 and ViT).

Every matrix is a plain ``nn.Linear`` — the query, key, value and output projections of the
attention and the two layers of the MLP — so all of them are prunable layers for
``sparsify.reparametrize`` and the masks. Embeddings and ``LayerNorm`` are other module types
and are kept dense unless selected by name.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from sparsify.errors import ConfigError, check_choice
from sparsify.models.init import Init, initialize

TransformerInit = Literal["trunc_normal", Init]


class SelfAttention(nn.Module):
    """Multi-head self-attention softmax(q kᵀ / sqrt(d)) v with separate q, k, v projections,
    so ``W_Q`` and ``W_K`` are distinct matrices (the single-layer attention study prunes them)."""

    def __init__(self, dim: int, heads: int, causal: bool, bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"heads={heads} is invalid: must divide the width {dim}")
        self.heads, self.causal = heads, causal
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(dim, dim, bias=bias)
        self.v = nn.Linear(dim, dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split_heads(y):
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split_heads(self.q(x)), split_heads(self.k(x)), split_heads(self.v(x))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)); ``mlp=False`` leaves attention only."""

    def __init__(self, dim, heads, mlp_ratio=4.0, causal=False, mlp=True, bias=True, dropout=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, causal, bias)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim) if mlp else None
        self.mlp = MLP(dim, int(dim * mlp_ratio), bias) if mlp else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        if self.mlp is not None:
            x = x + self.drop(self.mlp(self.norm2(x)))
        return x


def init_transformer(model: nn.Module, init: TransformerInit, std: float = 0.02) -> nn.Module:
    """``trunc_normal``: weights of linear, conv and embedding layers ~ N(0, std²) truncated at
    ±2 std, zero biases, LayerNorm γ=1 β=0 (DeiT, GPT-2); ``kaiming_normal`` and ``default`` as
    for the CNNs (``sparsify.models.init``). Parameters that are not in a layer (ViT's class
    token and position embedding) are drawn from the truncated normal in every case."""
    check_choice("init", init, TransformerInit)
    if init != "trunc_normal":
        return initialize(model, init)
    for layer in model.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.Embedding)):
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.LayerNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def scale_residual_projections(model: nn.Module, depth: int, std: float = 0.02) -> None:
    """GPT-2: the layers writing into the residual stream get std / sqrt(2 · depth)."""
    for name, layer in model.named_modules():
        if name.endswith(("attn.proj", "mlp.fc2")):
            s = std / math.sqrt(2 * depth)
            nn.init.trunc_normal_(layer.weight, std=s, a=-2 * s, b=2 * s)
