"""The ``state_key`` of a callback, built from its arguments, so that two instances of one
callback with different arguments keep their own state in a checkpoint."""

from __future__ import annotations

import lightning as L

from sparsify.masks import pattern_key


def argument_key(callback: L.Callback, *names: str) -> str:
    """Lightning's ``_generate_state_key`` over the callback's attributes ``names``, in order;
    ``"pattern"`` counts only when not unstructured (``pattern_key``), so the keys of
    unstructured runs are those written before N:M patterns existed."""
    arguments = {}
    for name in names:
        value = getattr(callback, name)
        arguments |= pattern_key(value) if name == "pattern" else {name: value}
    return callback._generate_state_key(**arguments)
