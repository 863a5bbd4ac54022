"""Reading the files a model was saved to: a Lightning checkpoint (a dict with ``"state_dict"``
and ``"hyper_parameters"``) or a file that holds a plain ``state_dict``.

Files are unpickled in full (a Lightning checkpoint holds more than tensors): load only files
you trust. ``argument`` names the option the path came from, for the error message.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from sparsify.errors import ConfigError
from sparsify.portable import restore_state_dict


def read_checkpoint(path: str | Path, argument: str = "checkpoint"):
    """What the file at ``path`` holds, with its tensors on the CPU."""
    if not Path(path).is_file():
        raise ConfigError(f"{argument}={str(path)!r} is invalid: no such file")
    return torch.load(path, map_location="cpu", weights_only=False)


def read_state_dict(
    path: str | Path, argument: str = "checkpoint", submodule: str | None = None
) -> OrderedDict:
    """The model state in ``path``: a Lightning checkpoint's ``state_dict`` or the plain state
    dict the file holds, as the module saved it (the masks and m, w of a portable checkpoint
    restored: ``sparsify.portable.restore_state_dict``).

    ``submodule`` (e.g. ``"model"``): of a Lightning checkpoint only the entries of that
    submodule, named relative to it; a plain state dict is taken as the submodule's already.
    """
    checkpoint = read_checkpoint(path, argument)
    lightning = isinstance(checkpoint, dict) and "state_dict" in checkpoint
    state = checkpoint["state_dict"] if lightning else checkpoint
    if not isinstance(state, dict):
        raise ConfigError(f"{argument}={str(path)!r} is invalid: it holds no state_dict")
    state = restore_state_dict(state)
    if lightning and submodule is not None:
        prefix = f"{submodule}."
        state = OrderedDict((k[len(prefix) :], v) for k, v in state.items() if k.startswith(prefix))
    return state
