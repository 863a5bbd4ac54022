"""The sparse state of a model: the one module that knows ``torch.nn.utils.parametrize``'s
internals and the key layout of the state dicts and checkpoints a sparsified model writes.

A sparsified weight carries one sparsify parametrization, first in its list:
``PointwiseProduct`` (θ = m ⊙ w ⊙ mask, ``sparsify.reparam``), ``Mask`` (θ = w ⊙ mask) or a
soft mask (``sparsify.soft_masks``). ``parametrize`` stores a layer's weight as

    <layer>.parametrizations.weight.original0   m  } of a PointwiseProduct
    <layer>.parametrizations.weight.original1   w  }
    <layer>.parametrizations.weight.original    w, of a Mask or soft mask
    <layer>.parametrizations.weight.0.mask      the 0/1 mask (and a soft mask's scores,
    <layer>.parametrizations.weight.0.<name>    threshold ... beside it)

The rest of sparsify reaches these through the functions here: on a live layer
``parametrizations``, ``factors`` (m, w), ``unmasked_weight``, ``stored_tensors``, and
``own_class``, ``plain_copy``, ``unparametrize_`` to multiply them out; in a saved
state dict ``factor_keys``, ``mask_key``, ``pointwise_layers``, ``masked_layers``,
``masked_weight_key``, ``effective_weights``, ``saved_masks``, ``parametrization_keys``; and
the plain model file, ``plain_model``.

**The portable form.** ``parametrize`` gives a parametrized layer a class of its own that
refuses to be pickled, and a state dict that a plain module cannot load. ``register`` gives
that class a ``__reduce_ex__`` that pickles a collapsed copy (the plain layer, weight = θ) and
a ``_load_from_state_dict`` that reads the portable form. ``portable_state_dict`` writes it:
every parametrized tensor under its plain key (``<layer>.weight`` = θ = m ⊙ w ⊙ mask, exact
zeros), and the parametrization's own entries in the state dict's metadata, which a plain
module ignores::

    state_dict._metadata[<layer>]["sparsify"] = {
        "format": 1,                     # FORMAT, the layout of this entry
        "plain": ["weight"],             # the tensors stored under their plain keys
        "state": {"parametrizations.weight.original0": m, ...},  # keys relative to <layer>
    }

A parametrized module loads it back bit-exactly; ``restore_state_dict`` undoes it without a
module. An entry without ``"format"`` was written before the version existed (format 0, the
same layout) and is read as it is; a later layout change adds a step to ``MIGRATIONS`` that
turns an entry of the format before into the next; a format newer than ``FORMAT`` is refused
in one line.
"""

from __future__ import annotations

import copy
import operator
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsify.errors import ConfigError

STASH = "sparsify"
FORMAT = 1
PARAMETRIZED = "parametrizations."
_WEIGHT = ".parametrizations.weight."


# Live layers.


def register(layer: nn.Module, tensor_name: str, parametrization: nn.Module) -> None:
    """``parametrize.register_parametrization`` whose layer stays picklable and loads the
    portable state dict."""
    parametrize.register_parametrization(layer, tensor_name, parametrization)
    cls = type(layer)  # parametrize's class, made for this layer alone
    cls.__reduce_ex__ = _reduce_as_plain
    cls._load_from_state_dict = _load_portable


def parametrizations(layer: nn.Module, tensor_name: str = "weight") -> list[nn.Module]:
    """The parametrizations of ``layer.<tensor_name>``, in order (``[]`` when it has none)."""
    if not parametrize.is_parametrized(layer, tensor_name):
        return []
    return list(layer.parametrizations[tensor_name])


def stored_tensors(layer: nn.Module, tensor_name: str = "weight") -> list[nn.Parameter]:
    """The parameters that hold ``layer.<tensor_name>``: ``[m, w]`` under a ``PointwiseProduct``,
    ``[w]`` under a ``Mask`` or soft mask, the tensor itself when it is not parametrized."""
    if not parametrize.is_parametrized(layer, tensor_name):
        return [getattr(layer, tensor_name)]
    return list(layer.parametrizations[tensor_name].parameters(recurse=False))


def factors(layer: nn.Module) -> tuple[nn.Parameter, nn.Parameter]:
    """The parameters ``(m, w)`` of a layer whose weight is a ``PointwiseProduct``."""
    originals = layer.parametrizations.weight
    return originals.original0, originals.original1


def unmasked_weight(layer: nn.Module) -> nn.Parameter:
    """The stored weight w of a layer whose weight is w ⊙ mask (a ``Mask`` or a soft mask)."""
    return layer.parametrizations.weight.original


def own_class(layer: nn.Module) -> None:
    """Give a parametrized layer a class of its own. ``copy.deepcopy`` keeps the class that
    ``parametrize`` made for the original layer, and ``remove_parametrizations`` deletes the
    ``weight`` property from that class: collapsing a copy would break the original."""
    cls = type(layer)
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    plain = parametrize.type_before_parametrizations(layer)
    layer.__class__ = type(cls.__name__, (plain,), namespace)


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


@torch.no_grad()
def unparametrize_(layer: nn.Module) -> None:
    """Replace each parametrized tensor of ``layer`` by a plain parameter holding its current
    value, in place.

    ``parametrize.remove_parametrizations`` would delete the property from the injected
    class, which a deep copy shares with the original: the original would lose its weight.
    """
    values = {name: getattr(layer, name).detach().clone() for name in layer.parametrizations}
    plain = parametrize.type_before_parametrizations(layer)
    del layer._modules["parametrizations"]
    layer.__class__ = plain
    for name, value in values.items():
        layer.register_parameter(name, nn.Parameter(value))


# Saved state dicts (the parametrized layout, as ``module.state_dict()`` writes it).


def factor_keys(layer: str) -> tuple[str, str]:
    """The state-dict keys of m and w of ``layer``'s ``PointwiseProduct``."""
    return f"{layer}{_WEIGHT}original0", f"{layer}{_WEIGHT}original1"


def masked_weight_key(layer: str) -> str:
    """The state-dict key of the stored w of ``layer``'s ``Mask`` or soft mask."""
    return f"{layer}{_WEIGHT}original"


def mask_key(layer: str) -> str:
    """The state-dict key of ``layer``'s mask buffer."""
    return f"{layer}{_WEIGHT}0.mask"


def parametrization_keys(layer: str, parametrization: nn.Module) -> set[str]:
    """The state-dict keys of the parameters and buffers of ``layer``'s sparsify
    parametrization itself (its mask, a soft mask's scores and threshold), not of m, w."""
    own = [*parametrization.named_parameters(), *parametrization.named_buffers()]
    return {f"{layer}{_WEIGHT}0.{key}" for key, _ in own}


def pointwise_layers(state_dict: dict) -> list[str]:
    """The layers saved with a ``PointwiseProduct`` weight (m ⊙ w) in ``state_dict``."""
    return [_layer_of(k) for k in state_dict if k.endswith(factor_keys("")[0])]


def masked_layers(state_dict: dict) -> list[str]:
    """The layers saved with a ``Mask`` or soft-mask weight (w ⊙ mask) in ``state_dict``."""
    return [_layer_of(k) for k in state_dict if k.endswith(masked_weight_key(""))]


def saved_masks(state_dict: dict) -> dict[str, torch.Tensor]:
    """``{layer name: mask}`` of the masked or reparametrized layers in ``state_dict``."""
    suffix = mask_key("")
    return {k[: -len(suffix)]: v for k, v in state_dict.items() if k.endswith(suffix)}


def effective_weights(state_dict: dict) -> dict[str, torch.Tensor]:
    """``{layer name: θ}``, each layer's weight as the forward pass computes it: ``weight``,
    ``w ⊙ mask`` or ``m ⊙ w ⊙ mask``."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith(".weight") and _WEIGHT not in key:
            out[key[: -len(".weight")]] = value
        elif key.endswith(masked_weight_key("")):
            out[key[: -len(masked_weight_key(""))]] = value
        elif key.endswith(factor_keys("")[0]):
            layer = key[: -len(factor_keys("")[0])]
            out[layer] = value * state_dict[factor_keys(layer)[1]]
    masks = saved_masks(state_dict)
    return {name: w * masks[name] if name in masks else w for name, w in out.items()}


def plain_model(network: nn.Module, masks: dict[str, torch.Tensor]) -> dict:
    """``{"state_dict", "masks"}``, the content of a plain model file (the export's
    ``model.pt``, a run's ``sparse_model.pt``): the state dict of ``network`` after its
    parametrizations were multiplied out, which loads into the network built without sparsify,
    and ``{layer name: mask}``."""
    return {"state_dict": network.state_dict(), "masks": masks}


def _layer_of(key: str) -> str:
    return key.rsplit(f".{PARAMETRIZED}", 1)[0]


# The portable form (see the module docstring).


def _reduce_as_plain(self: nn.Module, protocol: int):
    # Unpickled through a stdlib callable, so that loading never needs sparsify.
    return operator.itemgetter(0), ((plain_copy(self),),)


def _load_portable(self, state_dict, prefix, local_metadata, *args) -> None:
    stash = local_metadata.get(STASH)
    if stash is not None and not any(k.startswith(prefix + PARAMETRIZED) for k in state_dict):
        stash = read_stash(stash, prefix.rstrip("."))
        for tensor_name in stash["plain"]:
            state_dict.pop(prefix + tensor_name, None)
        for key, value in stash["state"].items():
            state_dict[prefix + key] = value
    super(type(self), self)._load_from_state_dict(state_dict, prefix, local_metadata, *args)


def _from_format_0(stash: dict) -> dict:
    # Format 0 (no "format" key) has the layout of format 1.
    return {**stash, "format": 1}


# MIGRATIONS[n] turns a stash of format n into one of format n + 1.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {0: _from_format_0}


def read_stash(stash: dict, layer: str) -> dict:
    """A layer's portable entry in the current ``FORMAT``, migrated from an older one; a newer
    or unknown format is a ``ConfigError``."""
    version = stash.get("format", 0)
    if type(version) is not int or not 0 <= version <= FORMAT:
        raise ConfigError(
            f"the portable state of layer {layer!r} has format {version!r}: this sparsify reads "
            f"formats 0 to {FORMAT}; upgrade sparsify to load it"
        )
    while version < FORMAT:
        stash = MIGRATIONS[version](stash)
        version = stash["format"]
    return stash


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
        stash = {"format": FORMAT, "plain": list(layer.parametrizations), "state": state}
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
            stash = read_stash(stash, name)
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
