"""Reading the files a model was saved to: a Lightning checkpoint (a dict with ``"state_dict"``
and ``"hyper_parameters"``) or a file that holds a plain ``state_dict``.

Files are read with ``torch.load(weights_only=True)``: tensors, containers and plain values,
plus the few classes that Lightning checkpoints hold in their hyper-parameters
(``safe_globals()``: paths, argparse / jsonargparse namespaces, omegaconf configs). Unpickling
anything else could run code that the file names, so a file that needs it is refused with a
``ConfigError`` unless the caller says it is ``trusted`` (``sparsify export
--trust-checkpoint``, ``SignTransfer(trusted=True)``). A file that is not a checkpoint at all
(truncated, corrupt, another format) is refused too, in one line that names it. ``argument``
names the option the path came from, for the error message.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib
import pathlib
import pickle
import pickletools
import re
import typing
from collections import OrderedDict
from pathlib import Path

import torch

from sparsify.errors import ConfigError
from sparsify.state import restore_state_dict

# Classes rebuilt from their plain contents only (no code of the file's choosing runs).
_ALWAYS = [
    pathlib.PosixPath,
    pathlib.WindowsPath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    argparse.Namespace,
    collections.defaultdict,  # omegaconf's flags; its factory must be an allowed global too
    typing.Any,  # omegaconf's node types
    int,
    float,
    bool,
    str,
    dict,
    list,
    tuple,
]
# module: names, imported where installed (Lightning CLI configs, Hydra / omegaconf hparams).
_OPTIONAL = {
    "jsonargparse": ["Namespace"],
    "omegaconf.dictconfig": ["DictConfig"],
    "omegaconf.listconfig": ["ListConfig"],
    "omegaconf.base": ["Metadata", "ContainerMetadata"],
    "omegaconf.nodes": ["AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode"],
}


def safe_globals() -> list:
    """The classes, beyond tensors and plain values, that a checkpoint may hold and still be
    read with ``weights_only=True``."""
    found = list(_ALWAYS)
    for module_name, names in _OPTIONAL.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found += [getattr(module, name) for name in names if hasattr(module, name)]
    return found


@contextlib.contextmanager
def allow_checkpoint_globals():
    """Within: ``torch.load(weights_only=True)`` accepts ``safe_globals()`` too (also for
    Lightning's own loading of ``ckpt_path``)."""
    context = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    with context(safe_globals()) if context else contextlib.nullcontext():
        yield


def read_checkpoint(
    path: str | Path,
    argument: str = "checkpoint",
    trusted: bool = False,
    trust_flag: str | None = "trusted=True",
):
    """What the file at ``path`` holds, with its tensors on the CPU. ``trusted``: unpickle it in
    full (only for files you trust); ``trust_flag``: how the caller's user says so, for the
    error message (``None``: there is no way)."""
    name = f"{argument}={str(path)!r}"
    if not Path(path).is_file():
        raise ConfigError(f"{name} is invalid: no such file")
    try:
        if trusted:
            return torch.load(path, map_location="cpu", weights_only=False)
        with allow_checkpoint_globals():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = "Weights only load failed" in str(error)
        if "Unsupported operand" in str(error):  # an opcode it does not know: is it a pickle?
            refused = refused and _is_pickle(path)
        if not trusted and refused:
            remedy = (
                f"if you trust the file, pass {trust_flag}"
                if trust_flag
                else "only files that load with torch.load(weights_only=True) are read here"
            )
            raise ConfigError(
                f"{name} is refused: reading it needs full unpickling, which can run code "
                f"stored in the file ({_unsafe_part(error)}); {remedy}"
            ) from None
        raise ConfigError(f"{name} is invalid: {_unreadable(error)}") from None
    except Exception as error:  # torch.load raises many types on a file it cannot parse
        raise ConfigError(f"{name} is invalid: {_unreadable(error)}") from None


def _is_pickle(path) -> bool:
    """Whether the file parses as a pickle stream, read opcode by opcode without running any."""
    try:
        with open(path, "rb") as file:
            for _ in pickletools.genops(file):
                pass
    except Exception:
        return False
    return True


def _unsafe_part(error: Exception) -> str:
    """What the weights-only unpickler refused: the global it names, or the file's kind."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    if found:
        return f"it holds {found.group(1)}"
    return "it is not a file of torch.save, or holds objects beyond tensors and plain values"


def _unreadable(error: Exception) -> str:
    """Why torch.load could not read the file: the first sentence of its error."""
    first = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else ""
    detail = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return (
        "not a checkpoint that torch.load can read: truncated, corrupt or another format "
        f"({detail})"
    )


def read_state_dict(
    path: str | Path,
    argument: str = "checkpoint",
    submodule: str | None = None,
    trusted: bool = False,
    trust_flag: str | None = "trusted=True",
) -> OrderedDict:
    """The model state in ``path``: a Lightning checkpoint's ``state_dict`` or the plain state
    dict the file holds, as the module saved it (the masks and m, w of a portable checkpoint
    restored: ``sparsify.state.restore_state_dict``).

    ``submodule`` (e.g. ``"model"``): of a Lightning checkpoint only the entries of that
    submodule, named relative to it; a plain state dict is taken as the submodule's already.
    ``trusted``, ``trust_flag``: as in ``read_checkpoint``.
    """
    checkpoint = read_checkpoint(path, argument, trusted, trust_flag)
    lightning = isinstance(checkpoint, dict) and "state_dict" in checkpoint
    state = checkpoint["state_dict"] if lightning else checkpoint
    if not isinstance(state, dict):
        raise ConfigError(f"{argument}={str(path)!r} is invalid: it holds no state_dict")
    state = restore_state_dict(state)
    if lightning and submodule is not None:
        prefix = f"{submodule}."
        state = OrderedDict((k[len(prefix) :], v) for k, v in state.items() if k.startswith(prefix))
    return state
