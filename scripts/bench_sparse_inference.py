"""Measured CPU inference speed of sparse LeNet-300-100 and LeNet-5 against the dense model.
Not a test: run it and paste the markdown it prints into docs/performance.md.

    python scripts/bench_sparse_inference.py [--sparsities 0.9 0.95 0.98 0.99] [--threads 1]

Each model is magnitude-pruned with the same sparsity in every layer (random weights: speed
does not depend on what the weights learned) and run, in eval mode under
``torch.inference_mode``, by each way of executing it:

- ``dense``: the plain collapsed model (exact zeros, dense kernels);
- ``torch CSR, linear``: ``sparsify.export.to_sparse``, every ``nn.Linear`` a ``torch.sparse``
  CSR matrix product, convolutions dense;
- ``torch CSR, all``: the convolutions too, as im2col (``F.unfold``) and a CSR product;
- ``scipy CSR, all``: the same with ``scipy.sparse`` CSR matrices on numpy arrays.

The variants take turns, one timed block each, ``--reps`` times (so a change of load on the
shared machine hits all alike); a block repeats the forward until it has run ``--block`` seconds.
Reported: images per second (median over the reps) at batch 1 and batch 256 of the dense model,
and each way's speed as a multiple of it (its images per second in brackets), from the same run;
"—" where a way has nothing to do (LeNet-300-100 has no convolution). Every variant's output
is checked against the dense model's first.
Before the timings, the bytes: each pruned model's state dict as a dense safetensors file and
as ``sparsify export --format sparse`` writes it (``sparsify.sparse_safetensors``), read back
and compared.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F
from torch import nn

from sparsify.errors import ConfigError
from sparsify.export import collapsed_copy, to_sparse
from sparsify.masks import magnitude_prune
from sparsify.models import create_model
from sparsify.reparam import add_masks
from sparsify.sparse_safetensors import read_sparse, write_sparse


def lenet_300_100() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def lenet5() -> nn.Module:
    """Caffe's LeNet-5 with ReLUs, for 28 × 28 inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(800, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )


def build(name: str) -> nn.Module:
    """The registry's model where it has one, else the same architecture defined above."""
    try:
        return create_model(name, num_classes=10)
    except ConfigError:
        return {"lenet_300_100": lenet_300_100, "lenet5": lenet5}[name]()


class CSRConv2d(nn.Module):
    """A convolution (groups 1) as im2col and a torch CSR product: W (out × in·k·k) @ columns."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        assert conv.groups == 1
        self.settings = dict(
            kernel_size=conv.kernel_size,
            dilation=conv.dilation,
            padding=conv.padding,
            stride=conv.stride,
        )
        self.out_channels = conv.out_channels
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            self.weight = conv.weight.detach().reshape(conv.out_channels, -1).to_sparse_csr()
        self.bias = None if conv.bias is None else conv.bias.detach().reshape(1, -1, 1)

    def columns(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        n, _, h, w = x.shape
        cols = F.unfold(x, **self.settings)  # (N, in·k·k, L)
        size = [
            (d + 2 * p - dil * (k - 1) - 1) // s + 1
            for d, p, dil, k, s in zip(
                (h, w),
                self.settings["padding"],
                self.settings["dilation"],
                self.settings["kernel_size"],
                self.settings["stride"],
            )
        ]
        return cols.transpose(0, 1).reshape(cols.shape[1], -1), (n, *size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols, (n, h, w) = self.columns(x)
        out = torch.sparse.mm(self.weight, cols).reshape(self.out_channels, n, h * w)
        out = out.transpose(0, 1)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(n, self.out_channels, h, w)


class ScipyLinear(nn.Module):
    """y = x Wᵀ + b with W a ``scipy.sparse`` CSR matrix."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = scipy.sparse.csr_matrix(linear.weight.detach().numpy())
        self.bias = None if linear.bias is None else linear.bias.detach().numpy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (self.weight @ x.numpy().T).T
        if self.bias is not None:
            out = out + self.bias
        return torch.from_numpy(np.ascontiguousarray(out))


class ScipyConv2d(CSRConv2d):
    """``CSRConv2d`` with the product in ``scipy.sparse``."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__(conv)
        self.weight = scipy.sparse.csr_matrix(conv.weight.detach().reshape(self.out_channels, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols, (n, h, w) = self.columns(x)
        out = torch.from_numpy(self.weight @ cols.numpy()).reshape(self.out_channels, n, h * w)
        out = out.transpose(0, 1)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(n, self.out_channels, h, w)


def replaced(model: nn.Module, linear: type | None, conv: type | None) -> nn.Module:
    """A copy of the Sequential ``model`` with its linear and conv layers replaced."""
    layers = []
    for layer in model:
        if isinstance(layer, nn.Linear) and linear is not None:
            layer = linear(layer)
        elif isinstance(layer, nn.Conv2d) and conv is not None:
            layer = conv(layer)
        layers.append(layer)
    return nn.Sequential(*layers).eval()


def variants(model: nn.Module) -> dict[str, nn.Module]:
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    ways = {"dense": model, "torch CSR, linear": to_sparse(model)}
    if has_conv:
        ways["torch CSR, all"] = replaced(to_sparse(model), None, CSRConv2d)
    ways["scipy CSR, all"] = replaced(model, ScipyLinear, ScipyConv2d)
    return ways


def pruned(name: str, sparsity: float) -> nn.Module:
    torch.manual_seed(0)
    model = build(name)
    add_masks(model)
    magnitude_prune(model, sparsity, scope="layer")
    plain, _ = collapsed_copy(model)
    return plain


def file_bytes(model: nn.Module) -> tuple[int, int]:
    """Bytes of the state dict as a dense safetensors file and as the sparse one (checked to
    read back equal)."""
    from safetensors.torch import save_file

    state = model.state_dict()
    with tempfile.TemporaryDirectory() as folder:
        dense, sparse = Path(folder) / "dense.safetensors", Path(folder) / "sparse.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(dense))
        write_sparse(state, sparse)
        back = read_sparse(sparse)
        assert all(torch.equal(back[k], v) for k, v in state.items())
        return dense.stat().st_size, sparse.stat().st_size


def images_per_second(model: nn.Module, x: torch.Tensor, seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while True:
        model(x)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * x.shape[0] / elapsed


@torch.inference_mode()
def measure(name: str, sparsity: float, batch: int, reps: int, block: float) -> dict:
    dense = pruned(name, sparsity)
    ways = variants(dense)
    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    reference = dense(x)
    for way, model in ways.items():
        torch.testing.assert_close(model(x), reference, rtol=1e-4, atol=1e-5, msg=way)
        images_per_second(model, x, block / 4)  # warm-up
    rates = {way: [] for way in ways}
    for _ in range(reps):
        for way, model in ways.items():
            rates[way].append(images_per_second(model, x, block))
    return {way: statistics.median(r) for way, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet_300_100", "lenet5"])
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.98, 0.99])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 256])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--block", type=float, default=0.2, help="seconds per timed block")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({args.threads} thread(s)), scipy {scipy.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| model | sparsity | dense safetensors (bytes) | sparse file (bytes) | × dense |")
    print("|---|---:|---:|---:|---:|")
    for name in args.models:
        for sparsity in args.sparsities:
            dense, sparse = file_bytes(pruned(name, sparsity))
            print(
                f"| {name} | {100 * sparsity:g} % | {dense:,} | {sparse:,} | {sparse / dense:.3f} |"
            )
    print()
    ways = ["torch CSR, linear", "torch CSR, all", "scipy CSR, all"]
    print("| model | sparsity | batch | dense (images/s) | " + " | ".join(ways) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(ways))
    for name in args.models:
        for sparsity in args.sparsities:
            for batch in args.batches:
                rates = measure(name, sparsity, batch, args.reps, args.block)
                cells = [
                    f"{rates[way] / rates['dense']:.2f} × ({rates[way]:,.0f})"
                    if way in rates
                    else "—"
                    for way in ways
                ]
                print(
                    f"| {name} | {100 * sparsity:g} % | {batch} | {rates['dense']:,.0f} | "
                    + " | ".join(cells)
                    + " |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
