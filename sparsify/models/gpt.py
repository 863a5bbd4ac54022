"""A small GPT-style causal transformer (Radford et al. 2019, in the manner of nanoGPT), and the
single-layer attention model of the attention study (Mirror, Mirror of the Flow).

Input: token ids ``(B, T)`` with ``T <= context_length``; output: next-token logits
``(B, T, num_classes)``, ``num_classes`` being the vocabulary size (tokens in and out).

Prunable by default: the q, k, v and output projections of every attention layer, the two MLP
layers and the output head — all ``nn.Linear``. The token and position embeddings
(``nn.Embedding``) and the LayerNorms are other module types, so ``reparametrize`` and the masks
leave them dense unless a pattern selects them by name (``include=[nn.Linear, "tok_emb"]``).
With ``tie_weights=True`` the head reuses the token embedding (logits = h Eᵀ) and has no weight
of its own, so it is dense like the embedding; untied (the default) it is an ``nn.Linear``.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsify.errors import ConfigError, check_counts
from sparsify.models import register_model
from sparsify.models.transformer import Block, init_transformer, scale_residual_projections


class GPT(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        width: int,
        depth: int,
        heads: int,
        mlp: bool = True,
        mlp_ratio: float = 4.0,
        bias: bool = True,
        tie_weights: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_counts(num_classes=vocab_size, context_length=context_length)
        self.context_length = context_length
        self.tok_emb = nn.Embedding(vocab_size, width)
        self.pos_emb = nn.Embedding(context_length, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(
            *(
                Block(width, heads, mlp_ratio, causal=True, mlp=mlp, bias=bias, dropout=dropout)
                for _ in range(depth)
            )
        )
        self.norm = nn.LayerNorm(width)
        self.head = None if tie_weights else nn.Linear(width, vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        if t > self.context_length:
            raise ConfigError(
                f"context_length={self.context_length} is invalid for sequences of {t} tokens: "
                "set model_kwargs.context_length to at least the sequence length"
            )
        positions = torch.arange(t, device=tokens.device)
        x = self.drop(self.tok_emb(tokens) + self.pos_emb(positions))
        x = self.norm(self.blocks(x))
        if self.head is None:
            return x @ self.tok_emb.weight.t()
        return self.head(x)


@register_model("gpt")
def gpt(
    num_classes: int = 256,
    context_length: int = 128,
    width: int = 128,
    depth: int = 4,
    heads: int = 4,
    mlp: bool = True,
    mlp_ratio: float = 4.0,
    bias: bool = True,
    tie_weights: bool = False,
    dropout: float = 0.0,
    init: str = "trunc_normal",
) -> nn.Module:
    """GPT: ``depth`` pre-norm blocks of causal self-attention and MLP; ``num_classes`` is the
    vocabulary size (256: bytes). ``depth=1, mlp=False`` is single-layer attention."""
    model = GPT(
        num_classes, context_length, width, depth, heads, mlp, mlp_ratio, bias, tie_weights, dropout
    )
    init_transformer(model, init)
    if init == "trunc_normal":
        scale_residual_projections(model, depth)
    return model


@register_model("single_layer_attention")
def single_layer_attention(
    num_classes: int = 256,
    context_length: int = 64,
    width: int = 64,
    heads: int = 1,
    bias: bool = False,
    tie_weights: bool = False,
    init: str = "trunc_normal",
) -> nn.Module:
    """One causal self-attention layer without MLP (``W_Q``, ``W_K``, ``W_V``, ``W_O`` and the
    head are the prunable matrices): ``gpt(depth=1, mlp=False, heads=1, bias=False)``."""
    return gpt(
        num_classes,
        context_length,
        width,
        depth=1,
        heads=heads,
        mlp=False,
        bias=bias,
        tie_weights=tie_weights,
        init=init,
    )
