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

    def __init__(self, *args, **kwargs):
        warn_renamed("sparsify.callbacks.HAM", "sparsify.callbacks.HAMStep")
        super().__init__(*args, **kwargs)
