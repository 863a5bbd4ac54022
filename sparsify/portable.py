"""Sparsified modules that pickle and checkpoint as the plain network.

``torch.nn.utils.parametrize`` gives a parametrized layer a class of its own that refuses to
be pickled, and its ``state_dict`` holds ``weight`` as ``parametrizations.weight.original0``
(m), ``original1`` (w) and the mask. Two consequences in an ordinary Lightning project:
``save_hyperparameters()`` on a module that receives its network as an ``nn.Module`` crashes
at the first checkpoint save, and an eval script that builds the plain module cannot load the
checkpoint. This module removes both:

- ``register(layer, name, parametrization)`` registers a parametrization and gives the layer's
  class a ``__reduce_ex__`` that pickles a collapsed copy (the plain layer, weight = θ), and a
  ``_load_from_state_dict`` that accepts the portable form below.
- ``portable_state_dict(module, state_dict)`` is the portable form: every parametrized tensor
  is stored under its plain key (``layer.weight`` = θ = m ⊙ w ⊙ mask, exact zeros), and the
  parametrization's own entries (m, w, mask, soft-mask scores) move into the state dict's
  metadata (``state_dict._metadata[layer]["sparsify"]``), which a plain module ignores. A
  parametrized module loads it back bit-exactly; ``restore_state_dict`` undoes it without a
  module. The callbacks write checkpoints in this form (``on_save_checkpoint``).
"""

from __future__ import annotations

import copy
import operator
from collections import OrderedDict

import torch
from torch import nn
from torch.nn.utils import parametrize

STASH = "sparsify"
PARAMETRIZED = "parametrizations."


def register(layer: nn.Module, tensor_name: str, parametrization: nn.Module) -> None:
    """``parametrize.register_parametrization`` whose layer stays picklable and loads the
    portable state dict."""
    parametrize.register_parametrization(layer, tensor_name, parametrization)
    cls = type(layer)  # parametrize's class, made for this layer alone
    cls.__reduce_ex__ = _reduce_as_plain
    cls._load_from_state_dict = _load_portable


def plain_copy(layer: nn.Module) -> nn.Module:
    """A copy of ``layer`` with every parametrized tensor multiplied out (``layer`` unchanged)."""
    plain = copy.deepcopy(layer)
    for module in plain.modules():
        if parametrize.is_parametrized(module):
            own_class(module)
            names = list(module.parametrizations)
            for tensor_name in names:
                parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
            # Back in front, where nn.Linear and nn.Conv register their weight.
            rest = {k: v for k, v in module._parameters.items() if k not in names}
            module._parameters = {**{k: module._parameters[k] for k in names}, **rest}
    return plain


def own_class(layer: nn.Module) -> None:
    """Give a parametrized layer a class of its own. ``copy.deepcopy`` keeps the class that
    ``parametrize`` made for the original layer, and ``remove_parametrizations`` deletes the
    ``weight`` property from that class: collapsing a copy would break the original."""
    cls = type(layer)
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    plain = parametrize.type_before_parametrizations(layer)
    layer.__class__ = type(cls.__name__, (plain,), namespace)


def _reduce_as_plain(self: nn.Module, protocol: int):
    # Unpickled through a stdlib callable, so that loading never needs sparsify.
    return operator.itemgetter(0), ((plain_copy(self),),)


def _load_portable(self, state_dict, prefix, local_metadata, *args) -> None:
    stash = local_metadata.get(STASH)
    if stash is not None and not any(k.startswith(prefix + PARAMETRIZED) for k in state_dict):
        for tensor_name in stash["plain"]:
            state_dict.pop(prefix + tensor_name, None)
        for key, value in stash["state"].items():
            state_dict[prefix + key] = value
    super(type(self), self)._load_from_state_dict(state_dict, prefix, local_metadata, *args)


@torch.no_grad()
def portable_state_dict(module: nn.Module, state_dict: dict) -> OrderedDict:
    """``state_dict`` (of ``module``, as it is now) with plain keys for parametrized tensors and
    the parametrizations' entries kept in its metadata; see the module docstring. Idempotent."""
    metadata = copy.copy(getattr(state_dict, "_metadata", None) or OrderedDict())
    first_key: dict[str, str] = {}  # a layer's first parametrization key -> the layer's name
    stashed: set[str] = set()
    for name, layer in module.named_modules():
        # Only layers registered here load the portable form back; others keep their keys.
        if getattr(type(layer), "_load_from_state_dict", None) is not _load_portable:
            continue
        prefix = f"{name}." if name else ""
        keys = [k for k in state_dict if k.startswith(prefix + PARAMETRIZED)]
        if not keys:
            continue
        state = {k[len(prefix) :]: state_dict[k] for k in keys}
        stash = {"plain": list(layer.parametrizations), "state": state}
        metadata[name] = {**metadata.get(name, {}), STASH: stash}
        first_key[keys[0]] = name
        stashed.update(keys)
    out = OrderedDict()
    for key, value in state_dict.items():
        if key in first_key:
            name = first_key[key]
            layer = module.get_submodule(name)
            for tensor_name in layer.parametrizations:
                theta = getattr(layer, tensor_name).detach().to(value.device).clone()
                out[f"{name}.{tensor_name}" if name else tensor_name] = theta
        elif key not in stashed:
            out[key] = value
    out._metadata = metadata
    return out


def restore_state_dict(state_dict: dict) -> OrderedDict:
    """The state dict a parametrized module saved, from its portable form (a copy; a state dict
    that is not portable comes back unchanged)."""
    metadata = getattr(state_dict, "_metadata", None) or {}
    stashes = {name: meta[STASH] for name, meta in metadata.items() if STASH in meta}
    at_key = {}
    for name, stash in stashes.items():
        prefix = f"{name}." if name else ""
        if not any(k.startswith(prefix + PARAMETRIZED) for k in state_dict):
            at_key[prefix + stash["plain"][0]] = (prefix, stash)
    out = OrderedDict()
    dropped = {p + t for p, stash in at_key.values() for t in stash["plain"]}
    for key, value in state_dict.items():
        if key in at_key:
            prefix, stash = at_key[key]
            out.update({prefix + k: v for k, v in stash["state"].items()})
        elif key not in dropped:
            out[key] = value
    out._metadata = copy.copy(getattr(state_dict, "_metadata", None) or OrderedDict())
    return out
