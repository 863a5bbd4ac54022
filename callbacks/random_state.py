"""Random number generator states in the checkpoint, so a resumed run draws what the
uninterrupted run would have drawn (data order, dropout, random masks)."""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch


class RandomStateCheckpoint(L.Callback):
    """Save the Python, NumPy and torch (CPU and CUDA) generator states of this process in the
    checkpoint and restore them on resume. Lightning restores callback states before the
    training loop starts, so the next epoch's shuffling matches the uninterrupted run."""

    def state_dict(self) -> dict:
        state = {
            "python": random.getstate(),
            "numpy": _plain(np.random.get_state()),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        random.setstate(state_dict["python"])
        kind, keys, *rest = state_dict["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def _plain(numpy_state: tuple) -> tuple:
    """NumPy's state with its key array as a list, so ``torch.load(weights_only=True)``, which
    Lightning uses on resume, can read the checkpoint."""
    kind, keys, position, has_gauss, cached = numpy_state
    return kind, keys.tolist(), int(position), int(has_gauss), float(cached)
