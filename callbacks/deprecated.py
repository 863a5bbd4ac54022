"""Old spellings that configs and scripts may still hold: each works, warns once and names the
new one (CHANGELOG.md lists every rename)."""

from __future__ import annotations

from sparsify.callbacks.ham_step import HAMStep
from sparsify.renamed import warn_renamed


class HAM(HAMStep):
    """The old name of ``HAMStep`` (the optimizer wrapper is still ``sparsify.optim.HAM``).

    Args:
        alpha: as ``HAMStep``.
        beta: as ``HAMStep``.
        max_exponent: as ``HAMStep``.
        skip_zeros: as ``HAMStep``.
        revert_nan: as ``HAMStep``.
        max_weight_norm: as ``HAMStep``.
    """

    def __init__(
        self,
        alpha: float = 200.0,
        beta: float = 1e-3,
        max_exponent: float | None = 5.0,
        skip_zeros: bool = True,
        revert_nan: bool = True,
        max_weight_norm: float | None = 1000.0,
    ):
        warn_renamed("sparsify.callbacks.HAM", "sparsify.callbacks.HAMStep")
        super().__init__(alpha, beta, max_exponent, skip_zeros, revert_nan, max_weight_norm)
