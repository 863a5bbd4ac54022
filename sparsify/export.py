"""Export a model trained by ``sparsify fit``: a plain network with its masks, TorchScript or
ONNX, and a sparse inference path.

``export(checkpoint, out_dir)`` rebuilds the LightningModule named in the checkpoint's
``hyper_parameters`` (``_class_path``, written by the ``sparsify`` CLI) or built by a
``factory`` (any Lightning checkpoint, e.g. ``--factory myproject.models:build``), restores
its masks and m ⊙ w factors, multiplies them out (``sparsify.reparam.collapse``) and writes
to ``out_dir``:

- ``model.pt``: ``{"state_dict", "masks", "hyper_parameters"}``; the state dict is the plain
  network's (the module's ``model`` attribute), so it loads into
  ``sparsify.models.create_model(backbone, num_classes, **model_kwargs)`` without sparsify's
  parametrizations;
- ``model.torchscript.pt`` (``torch.jit.script``, or ``torch.jit.trace`` on zeros of
  ``input_shape`` for networks that do not script) or ``model.onnx`` (needs ``onnx``);
- ``safetensors``: ``model.safetensors`` (the plain state dict, exact zeros) and
  ``masks.safetensors`` (``{layer name: bool mask}``), both with the metadata ``sparsify``
  (JSON: ``hyper_parameters``, ``sparsity``); needs ``safetensors``;
- ``sparse``: ``model.sparse.safetensors``, the plain state dict with every sparse weight
  stored as its non-zeros and a packed bitmask (``sparsify.sparse_safetensors``; read back
  exactly by ``read_sparse``); needs ``safetensors``;
- ``pretrained``: ``pretrained/``, the network's own ``save_pretrained`` (a ``transformers``
  model only), which ``from_pretrained`` loads without sparsify.

``to_sparse(model)`` is the sparse inference path: a collapsed copy in which every
``nn.Linear`` holds its weight as a ``torch.sparse`` CSR matrix. Convolutions stay dense: on CPU
im2col followed by a CSR product was 15-30× slower than the dense convolution at 90-98 %
sparsity (docs/performance.md).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from sparsify.checkpoint import read_checkpoint
from sparsify.errors import ConfigError
from sparsify.masks import sparsity_report
from sparsify.renamed import warn_renamed
from sparsify.reparam import collapse, is_transposed, layer_masks, match_structure
from sparsify.sparse_safetensors import read_sparse as read_sparse
from sparsify.sparse_safetensors import write_sparse
from sparsify.state import plain_model

FORMATS = ("torchscript", "onnx", "safetensors", "sparse", "pretrained", "none")


def load_module(
    checkpoint_path: str | Path, factory: str | None = None, trusted: bool = False
) -> nn.Module:
    """The LightningModule of a checkpoint, with its masks and m ⊙ w, on CPU.

    ``factory`` (``"package.module:callable"``) builds the module for any Lightning checkpoint
    (the callable gets no arguments); without it, the checkpoint must come from
    ``sparsify fit``, whose hyper-parameters name the module's class. ``trusted``: unpickle the
    file in full (``sparsify.checkpoint.read_checkpoint``), e.g. a checkpoint whose
    hyper-parameters hold the network itself.
    """
    path = Path(checkpoint_path)
    trust_flag = "--trust-checkpoint (trusted=True in Python)"
    checkpoint = read_checkpoint(path, trusted=trusted, trust_flag=trust_flag)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"checkpoint={str(path)!r} is invalid: no state_dict in it")
    if factory is not None:
        module = import_factory(factory)()
    else:
        module = module_from_hparams(checkpoint, path)
    match_structure(module, checkpoint["state_dict"])
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


def import_factory(factory: str):
    """The callable named by ``"package.module:callable"``."""
    module_name, _, name = factory.partition(":")
    try:
        built = getattr(importlib.import_module(module_name), name) if name else None
    except (ImportError, AttributeError, ValueError):
        built = None
    if not callable(built):
        raise ConfigError(
            f"factory={factory!r} is invalid: give an importable 'package.module:callable' "
            "that returns the module the checkpoint was saved from"
        )
    return built


def module_from_hparams(checkpoint: dict, path: Path) -> nn.Module:
    """The LightningModule named by a ``sparsify fit`` checkpoint's hyper-parameters."""
    hparams = checkpoint.get("hyper_parameters", {})
    class_path = hparams.get("_class_path")
    if not isinstance(class_path, str):
        raise ConfigError(
            f"checkpoint={str(path)!r} is invalid without --factory: not a checkpoint of "
            "`sparsify fit` (no LightningModule class path in its hyper_parameters); give "
            "--factory package.module:callable that builds the module"
        )
    module_name, _, name = class_path.rpartition(".")
    module_class = getattr(importlib.import_module(module_name), name)
    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_")}
    if "init_from" in kwargs:  # the weights come from the checkpoint, not the original file
        kwargs["init_from"] = None
    return module_class(**kwargs)


def export(
    checkpoint_path: str | Path,
    out_dir: str | Path,
    format: str = "torchscript",
    input_shape: tuple[int, ...] | None = None,
    factory: str | None = None,
    submodule: str | None = None,
    trusted: bool = False,
) -> dict[str, Path]:
    """Write ``model.pt`` and the ``format`` file (see the module docstring); return the paths.

    ``input_shape`` (without the batch dimension) is needed for ONNX and for TorchScript of a
    network that ``torch.jit.script`` cannot compile (it is then traced). ``factory`` builds
    the module of any Lightning checkpoint (``load_module``); ``submodule`` names the network
    inside it to export (default: its ``model`` attribute if it has one, else all of it).
    ``trusted``: see ``load_module``.
    """
    if format not in FORMATS:
        raise ConfigError(f"format={format!r} is invalid: choose one of {', '.join(FORMATS)}")
    module = load_module(checkpoint_path, factory, trusted)
    network, saved_masks = collapsed_copy(network_of(module, submodule))
    check_writable(format, network)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Modules in the hyper-parameters (save_hyperparameters of a network) would make model.pt
    # unloadable with weights_only=True; the state dict carries their weights anyway.
    hparams = {
        k: v for k, v in getattr(module, "hparams", {}).items() if not isinstance(v, nn.Module)
    }
    paths = {"state_dict": out / "model.pt"}
    torch.save(
        {**plain_model(network, saved_masks), "hyper_parameters": hparams},
        paths["state_dict"],
    )
    if format == "torchscript":
        paths["torchscript"] = out / "model.torchscript.pt"
        torchscript(network, input_shape).save(str(paths["torchscript"]))
    elif format == "onnx":
        paths["onnx"] = out / "model.onnx"
        to_onnx(network, input_shape, paths["onnx"])
    elif format == "safetensors":
        paths.update(to_safetensors(network, saved_masks, hparams, out))
    elif format == "sparse":
        path = out / "model.sparse.safetensors"
        paths["sparse"] = write_sparse(network.state_dict(), path, metadata(network, hparams))
    elif format == "pretrained":
        paths["pretrained"] = to_pretrained(network, out / "pretrained")
    return paths


def collapsed_copy(
    network: nn.Module, device: torch.device | str | None = None
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``network`` in eval mode (on ``device`` if given), its masks and m ⊙ w
    multiplied out (``collapse``: plain weights with exact zeros), and the masks it had,
    ``{layer: mask}``."""
    plain = copy.deepcopy(network)
    if device is not None:
        plain.to(device)
    masks = {name: mask.detach().clone() for name, mask in layer_masks(plain).items()}
    return collapse(plain).eval(), masks


def network_of(module: nn.Module, submodule: str | None) -> nn.Module:
    if submodule is None:
        return getattr(module, "model", module)
    try:
        return module.get_submodule(submodule)
    except AttributeError:
        children = ", ".join(name for name, _ in module.named_children())
        raise ConfigError(
            f"submodule={submodule!r} is invalid: the module has no such submodule "
            f"(children: {children})"
        ) from None


def torchscript(network: nn.Module, input_shape: tuple[int, ...] | None) -> torch.jit.ScriptModule:
    """``torch.jit.script(network)``, or a trace on a zero batch of ``input_shape`` if the
    network does not script (Python-only code in its forward)."""
    try:
        return torch.jit.script(network)
    except Exception as error:  # TorchScript raises several unrelated types
        if input_shape is None:
            reason = str(error).splitlines()[0]
            raise ConfigError(
                f"input_shape=None is invalid for this network: it does not script ({reason}); "
                "give --input-shape C,H,W to trace it"
            ) from None
    with torch.no_grad():
        return torch.jit.trace(network, torch.zeros(1, *input_shape))


def to_onnx(network: nn.Module, input_shape: tuple[int, ...] | None, path: Path) -> None:
    try:
        import onnx  # noqa: F401  (torch.onnx needs it)
    except ImportError:
        raise ConfigError("format='onnx' is invalid here: `pip install onnx` first") from None
    if input_shape is None:
        raise ConfigError("input_shape=None is invalid with format='onnx': give --input-shape")
    torch.onnx.export(network, (torch.zeros(1, *input_shape),), str(path), dynamo=False)


def check_writable(format: str, network: nn.Module) -> None:
    """Refuse, before anything is written, a format this network or installation cannot take."""
    if format in ("safetensors", "sparse") and importlib.util.find_spec("safetensors") is None:
        raise ConfigError(f"format={format!r} is invalid here: `pip install safetensors` first")
    if format == "pretrained" and not callable(getattr(network, "save_pretrained", None)):
        raise ConfigError(
            f"format='pretrained' is invalid for a {type(network).__name__}: only a transformers "
            "model has save_pretrained; choose safetensors, torchscript, onnx or none"
        )


def to_safetensors(network: nn.Module, masks: dict, hparams: dict, out: Path) -> dict:
    """Write ``model.safetensors`` (the state dict) and ``masks.safetensors`` (bool masks), with
    ``{"sparsify": JSON of hyper_parameters and sparsity}`` as metadata; return their paths."""
    from safetensors.torch import save_file

    info = metadata(network, hparams)
    # safetensors refuses tensors that share memory (a tied head): each is stored on its own.
    state = {k: v.detach().clone().contiguous() for k, v in network.state_dict().items()}
    paths = {"safetensors": out / "model.safetensors", "masks": out / "masks.safetensors"}
    save_file(state, paths["safetensors"], info)
    save_file({k: v.bool().contiguous() for k, v in masks.items()}, paths["masks"], info)
    return paths


def metadata(network: nn.Module, hparams: dict) -> dict[str, str]:
    """The safetensors metadata of an export: ``{"sparsify": JSON of hyper_parameters and
    sparsity}``."""
    info = {"hyper_parameters": hparams, "sparsity": sparsity_report(network)["global"]}
    return {"format": "pt", "sparsify": json.dumps(info, default=str)}


def to_pretrained(network: nn.Module, path: Path) -> Path:
    """``network.save_pretrained(path)``: a ``transformers`` model's own checkpoint."""
    network.save_pretrained(path)
    return path


class SparseLinear(nn.Module):
    """y = x Wᵀ + b with W stored as a CSR matrix (only the non-zeros); inference only."""

    def __init__(self, linear: nn.Module):
        """``linear``: an ``nn.Linear``, or ``transformers``' ``Conv1D`` (weight in × out)."""
        super().__init__()
        weight = linear.weight.detach()
        weight = weight.t().contiguous() if is_transposed(linear) else weight
        self.out_features, self.in_features = weight.shape
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            self.register_buffer("weight", weight.to_sparse_csr())
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        out = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


@torch.no_grad()
def to_sparse(model: nn.Module) -> nn.Module:
    """A collapsed copy of ``model`` (masks and m ⊙ w multiplied out) whose ``nn.Linear`` (and
    ``transformers`` ``Conv1D``) layers are ``SparseLinear``; its outputs equal the masked dense
    model's (up to float rounding). Convolutions stay dense (faster on CPU; see the module
    docstring)."""
    sparse, _ = collapsed_copy(model)
    for name, layer in list(sparse.named_modules()):
        if isinstance(layer, nn.Linear) or is_transposed(layer):
            parent_name, _, child = name.rpartition(".")
            parent = sparse.get_submodule(parent_name) if parent_name else sparse
            setattr(parent, child, SparseLinear(layer))
    if isinstance(sparse, nn.Linear):
        return SparseLinear(sparse)
    return sparse


def __getattr__(name: str):
    """``sparsify.export.main``, the command, is ``sparsify.app.export.main`` now."""
    if name == "main":
        warn_renamed("sparsify.export.main", "sparsify.app.export.main")
        return importlib.import_module("sparsify.app.export").main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
