"""Old spellings that configs and scripts may still hold: each works, warns once and names the
new one (CHANGELOG.md lists every rename)."""

from __future__ import annotations

import warnings

from sparsify.callbacks.ham_step import HAMStep

_warned: set[str] = set()


def warn_renamed(old: str, new: str) -> None:
    """A ``FutureWarning`` that ``old`` is now ``new``, once per process and spelling."""
    if old not in _warned:
        _warned.add(old)
        warnings.warn(f"{old} is deprecated: use {new}", FutureWarning, stacklevel=3)


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
