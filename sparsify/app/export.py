"""``sparsify export``: the command over ``sparsify.export`` (collapse a checkpoint, write it
in a format)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsify.errors import ConfigError
from sparsify.export import FORMATS, export


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """``sparsify export CKPT --out DIR [--format FORMAT] [--input-shape C,H,W]``, FORMAT one
    of ``FORMATS``; prints the path of each file written, one a line, and returns them."""
    parser = argparse.ArgumentParser(
        prog="sparsify export",
        description="Collapse a `sparsify fit` checkpoint to a plain model and save it.",
    )
    parser.add_argument("checkpoint", help="a Lightning checkpoint (of `sparsify fit`, or any)")
    parser.add_argument(
        "--factory",
        default=None,
        help="package.module:callable that builds the LightningModule (any Lightning checkpoint)",
    )
    parser.add_argument(
        "--submodule", default=None, help="the network inside the module to export, e.g. net"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", default="torchscript", choices=FORMATS)
    parser.add_argument(
        "--input-shape",
        default=None,
        help="input shape without the batch dimension, e.g. 3,32,32 (for tracing and ONNX)",
    )
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="unpickle the checkpoint in full, which can run code stored in it: only for files "
        "you trust (needed where its hyper-parameters hold objects, such as the network)",
    )
    args = parser.parse_args(argv)
    shape = None
    if args.input_shape is not None:
        try:
            shape = tuple(int(n) for n in args.input_shape.split(","))
        except ValueError:
            raise ConfigError(
                f"input_shape={args.input_shape!r} is invalid: integers separated by commas"
            ) from None
    paths = export(
        args.checkpoint,
        args.out,
        args.format,
        shape,
        args.factory,
        args.submodule,
        trusted=args.trust_checkpoint,
    )
    for path in paths.values():
        print(path)
    return paths
