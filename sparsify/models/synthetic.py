"""Small models for the controlled studies (sparse regression, sparse coding, matrix sensing),
trained with ``sparsify.lightning.module.Regressor`` on float ``(x, y)`` batches.

``linear`` is y = θ x. Reparametrized with ``sparsify.reparametrize(model, beta)`` its weight is
θ = m ⊙ w: the diagonal linear network x = u ⊙ v of the implicit-bias studies, with no model of
its own. The default zero initialization with β = 1 gives m₀ = 1, w₀ = 0 (u₀ = 1, v₀ = 0, the
setting of docs/methods.md, "The controlled study").

``matrix_factorization`` is the matrix-sensing model y_i = ⟨A_i, U Vᵀ⟩ with U, V as the
weights of two ``nn.Linear`` layers, so weight decay, masks and m ⊙ w apply to the factors.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from sparsify.errors import ConfigError, check_choice, check_counts
from sparsify.models import register_model
from sparsify.models.init import Init, initialize

LinearInit = Literal["zeros", Init]


@register_model("linear")
def linear(
    num_classes: int = 1, in_features: int = 100, bias: bool = False, init: LinearInit = "zeros"
) -> nn.Module:
    """y = θ x (+ b): ``in_features`` unknowns, ``num_classes`` outputs; ``init`` ``zeros``
    (θ₀ = 0), ``kaiming_normal`` or ``default``."""
    check_choice("init", init, LinearInit)
    model = nn.Linear(in_features, num_classes, bias=bias)
    if init == "zeros":
        nn.init.zeros_(model.weight)
        if bias:
            nn.init.zeros_(model.bias)
        return model
    return initialize(model, init)


class MatrixFactorization(nn.Module):
    """X = U Vᵀ (``left.weight`` = U: rows × rank, ``right.weight`` = Vᵀ: rank × cols); the
    prediction for a measurement matrix A is ⟨A, X⟩ = sum(A ⊙ X)."""

    def __init__(self, rows: int, cols: int, rank: int):
        super().__init__()
        self.rows, self.cols = rows, cols
        self.left = nn.Linear(rank, rows, bias=False)
        self.right = nn.Linear(cols, rank, bias=False)

    def matrix(self) -> torch.Tensor:
        return self.left.weight @ self.right.weight

    def forward(self, measurements: torch.Tensor) -> torch.Tensor:
        """``measurements`` ``(B, rows, cols)`` or flattened ``(B, rows · cols)`` → ``(B,)``."""
        a = measurements.reshape(measurements.shape[0], self.rows, self.cols)
        return (a * self.matrix()).sum(dim=(1, 2))


@register_model("matrix_factorization")
def matrix_factorization(
    num_classes: int = 1,
    rows: int = 20,
    cols: int = 20,
    rank: int | None = None,
    init_scale: float = 1e-2,
) -> nn.Module:
    """Matrix sensing with X = U Vᵀ; ``rank`` defaults to full (min(rows, cols)); U and V start
    at N(0, init_scale²): a small scale gives the implicit low-rank bias (Gunasekar et al. 2017).
    One output per measurement, so ``num_classes`` must be 1."""
    if num_classes != 1:
        raise ConfigError(
            f"num_classes={num_classes!r} is invalid for matrix_factorization: it predicts one "
            "value per measurement (1)"
        )
    rank = min(rows, cols) if rank is None else rank
    check_counts(rows=rows, cols=cols, rank=rank)
    if not init_scale > 0:
        raise ConfigError(f"init_scale={init_scale!r} is invalid: must be > 0")
    model = MatrixFactorization(rows, cols, rank)
    for layer in (model.left, model.right):
        nn.init.normal_(layer.weight, std=init_scale)
    return model
