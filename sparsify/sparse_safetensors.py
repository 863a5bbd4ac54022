"""Sparse weights in a plain safetensors file: the non-zeros and a packed bitmask.

A floating-point tensor ``key`` that is smaller so is stored as two tensors,

    ``key::values``   its non-zero entries, 1-D, in row-major order, in its own dtype;
    ``key::bitmask``  uint8, bit i (least significant first) of byte i // 8 set where entry i of
                      the flattened tensor is non-zero;

and its shape in the file's metadata ``sparse_shapes`` (JSON ``{key: shape}``); any other
tensor is stored as it is, under its own name. The round trip is exact: every value comes back
equal (``torch.equal``), NaN included; a zero comes back as +0.0 (a masked negative weight is
-0.0 after ``w · 0``, and the sign of a zero carries nothing). Float32 weights at 90 % sparsity
take 0.1 · 4 + 1/8 bytes instead of 4: 0.13 of the dense file.

Reading it needs only ``safetensors`` and numpy (for float16/32/64 weights):

    import json
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file

    tensors = load_file("model.sparse.safetensors")
    with safe_open("model.sparse.safetensors", "np") as f:
        shapes = json.loads(f.metadata()["sparse_shapes"])
    state = {k: v for k, v in tensors.items() if "::" not in k}
    for key, shape in shapes.items():
        values, bits = tensors[key + "::values"], tensors[key + "::bitmask"]
        nonzero = np.unpackbits(bits, count=int(np.prod(shape)), bitorder="little").astype(bool)
        dense = np.zeros(nonzero.shape, values.dtype)
        dense[nonzero] = values
        state[key] = dense.reshape(shape)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SHAPES = "sparse_shapes"  # metadata key: JSON {key: shape} of the tensors stored sparse
KEYS = "state_dict_keys"  # metadata key: JSON list, the state dict's order
BIT_WEIGHTS = 2 ** torch.arange(8, dtype=torch.uint8)  # bit i of a byte, least significant first


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """A bool vector as uint8 bytes, 8 entries a byte, least significant bit first (numpy's
    ``packbits(bitorder="little")``)."""
    padded = torch.zeros(-(-bits.numel() // 8) * 8, dtype=torch.uint8)
    padded[: bits.numel()] = bits.to(torch.uint8)
    return (padded.reshape(-1, 8) * BIT_WEIGHTS).sum(1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` bits of ``pack_bits``'s bytes, as a bool vector."""
    return ((packed.reshape(-1, 1) & BIT_WEIGHTS) != 0).reshape(-1)[:count]


def encode(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors to write and ``{key: shape}`` of those stored as values and bitmask: every
    floating-point tensor whose non-zeros plus the bitmask take fewer bytes than it does."""
    tensors, shapes = {}, {}
    for key, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.is_floating_point() and tensor.numel() > 0:
            bits = tensor.reshape(-1) != 0  # NaN too
            packed_bytes = int(bits.sum()) * tensor.element_size() + -(-bits.numel() // 8)
            if packed_bytes < tensor.numel() * tensor.element_size():
                tensors[f"{key}::values"] = tensor.reshape(-1)[bits].clone()
                tensors[f"{key}::bitmask"] = pack_bits(bits)
                shapes[key] = list(tensor.shape)
                continue
        tensors[key] = tensor.clone()  # safetensors refuses tensors that share memory
    return tensors, shapes


def write_sparse(
    state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``state_dict`` to ``path`` in the format of the module docstring, with
    ``metadata`` (strings) beside ``sparse_shapes``."""
    from safetensors.torch import save_file

    tensors, shapes = encode(state_dict)
    order = json.dumps(list(state_dict))
    save_file(tensors, str(path), {**(metadata or {}), SHAPES: json.dumps(shapes), KEYS: order})
    return Path(path)


def read_sparse(path: str | Path) -> dict[str, torch.Tensor]:
    """The exact dense state dict of a file written by ``write_sparse`` (``sparsify export
    --format sparse``): each sparse tensor rebuilt from its values and bitmask, zeros
    elsewhere, in the state dict's own order."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as file:
        metadata = file.metadata() or {}
    shapes = json.loads(metadata.get(SHAPES, "{}"))
    state = {}
    for key, tensor in tensors.items():
        name, _, part = key.rpartition("::")
        if name not in shapes:
            state[key] = tensor
        elif part == "values":
            shape = shapes[name]
            bits = unpack_bits(tensors[f"{name}::bitmask"], torch.Size(shape).numel())
            dense = torch.zeros(bits.numel(), dtype=tensor.dtype)
            dense[bits] = tensor
            state[name] = dense.reshape(shape)
    order = json.loads(metadata.get(KEYS, "[]"))
    return {key: state[key] for key in order if key in state} | state
