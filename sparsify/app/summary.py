"""The end of a `sparsify fit` run: final checkpoint, test accuracy before and after pruning,
sparsity, FLOPs (``FlopsMonitor``), ``summary.json``, and the same in Weights & Biases with
the sparse model as an artifact."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden

from sparsify.app.tracking import WandbLogger
from sparsify.callbacks import FlopsMonitor, PruneAtEnd
from sparsify.export import collapsed_copy
from sparsify.masks import sparsity_report
from sparsify.state import plain_model

TRACKED_AT_END = ("signin/flips_since_init",)


def run_dir(trainer: L.Trainer) -> Path:
    """The run's own folder, ``<save_dir>/<name>/<version>`` of the first logger, where
    ModelCheckpoint puts its ``checkpoints/`` (``version_N`` for integer versions)."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version


def summarize(trainer: L.Trainer, model: L.LightningModule, datamodule) -> dict:
    """Save the final model, test it (and its unpruned state), write ``summary.json``."""
    folder = Path(trainer.strategy.broadcast(str(run_dir(trainer))))  # rank 0 knows the id
    checkpoint = folder / "checkpoints" / "final.ckpt"
    trainer.save_checkpoint(checkpoint)
    summary: dict = {"checkpoint": str(checkpoint), "model": model_name(model)}
    for key in TRACKED_AT_END:  # read before testing, which replaces the logged metrics
        if key in trainer.callback_metrics:
            summary[key] = float(trainer.callback_metrics[key])
    if _has_data(datamodule, "val") and is_overridden("validation_step", model):
        summary["val_acc"] = _accuracy(trainer, model, datamodule, "val")
    if _has_data(datamodule, "test"):
        pruner = next((c for c in trainer.callbacks if isinstance(c, PruneAtEnd)), None)
        if pruner is not None and pruner.unpruned_state_dict is not None:
            final = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(pruner.unpruned_state_dict)
            summary["test_acc_before_pruning"] = _accuracy(trainer, model, datamodule, "test")
            model.load_state_dict(final)
        summary["test_acc"] = _accuracy(trainer, model, datamodule, "test")  # logged last
    report = sparsity_report(model)
    summary["sparsity"] = report["global"]
    summary["layer_density"] = {name: 1 - s for name, s in report["layers"].items()}
    summary.update(flops_summary(trainer))
    summary["summary_file"] = str(folder / "summary.json")
    if trainer.is_global_zero:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(json.dumps(summary, indent=2))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                log_to_wandb(logger, model, summary, folder)
    return summary


def model_name(model: L.LightningModule) -> str:
    """The registry name of the network (``backbone``), else the module's class name."""
    return str(model.hparams.get("backbone") or type(model).__name__)


def log_to_wandb(logger: WandbLogger, model: L.LightningModule, summary: dict, folder: Path):
    """Summary values, a per-layer density table and the collapsed sparse model with its masks
    (artifact ``sparse-model-<run id>``, type ``model``)."""
    import wandb

    run = logger.experiment
    for key in ("test_acc", "test_acc_before_pruning", "sparsity", *FLOPS_KEYS):
        if summary.get(key) is not None:
            run.summary[f"final/{key}"] = summary[key]
    rows = [[name, density] for name, density in summary["layer_density"].items()]
    run.log({"final/layer_density": wandb.Table(columns=["layer", "density"], data=rows)})
    path = folder / "sparse_model.pt"
    network, masks = collapsed_copy(model, device="cpu")
    torch.save(plain_model(network, masks), path)
    artifact = wandb.Artifact(f"sparse-model-{run.id}", type="model", metadata=summary)
    artifact.add_file(str(path))
    run.log_artifact(artifact)


FLOPS_KEYS = ("inference_flops", "dense_inference_flops", "train_flops")


def flops_summary(trainer: L.Trainer) -> dict:
    """``inference_flops`` and ``dense_inference_flops`` of the final model per example, and
    ``train_flops``, the run's training FLOPs over dense training's (``FlopsMonitor``, RigL's
    count); nothing without a ``FlopsMonitor`` that saw a training batch."""
    monitor = next((c for c in trainer.callbacks if isinstance(c, FlopsMonitor)), None)
    inference = None if monitor is None else monitor.inference_flops()
    if inference is None:
        return {}
    return dict(zip(FLOPS_KEYS, (*inference, monitor.train_flops())))


def _has_data(datamodule, stage: str) -> bool:
    """Whether ``datamodule`` defines a ``val`` or ``test`` dataloader."""
    name = f"{stage}_dataloader"
    return datamodule is not None and getattr(type(datamodule), name) is not getattr(
        L.LightningDataModule, name
    )


def _accuracy(trainer: L.Trainer, model: L.LightningModule, datamodule, stage: str):
    """The ``val`` or ``test`` accuracy of ``model`` as it is now (``None`` if not logged)."""
    run = trainer.validate if stage == "val" else trainer.test
    results = run(model, datamodule=datamodule, verbose=False)
    value = results[0].get(f"{stage}/acc") if results else None
    return None if value is None else float(value)


def format_summary(summary: dict) -> str:
    """The summary as a plain-text table."""

    def fmt(value):
        return "n/a" if value is None else f"{value:.4f}"

    rows = []
    if "test_acc_before_pruning" in summary:
        rows.append(("test accuracy before pruning", fmt(summary["test_acc_before_pruning"])))
    if "test_acc" in summary:
        rows.append(("test accuracy", fmt(summary["test_acc"])))
    if "val_acc" in summary:
        rows.append(("validation accuracy", fmt(summary["val_acc"])))
    rows.append(("global sparsity", fmt(summary["sparsity"])))
    rows += [(f"  density {name}", fmt(d)) for name, d in summary["layer_density"].items()]
    if "inference_flops" in summary:
        sparse, dense = summary["inference_flops"], summary["dense_inference_flops"]
        ratio = f" ({sparse / dense:.4f} of dense {dense:.3g})" if dense else ""
        rows.append(("inference FLOPs per example", f"{sparse:.3g}{ratio}"))
        rows.append(("training FLOPs, of dense training", fmt(summary["train_flops"])))
    rows += [("checkpoint", summary["checkpoint"]), ("summary", summary["summary_file"])]
    width = max(len(key) for key, _ in rows)
    line = "-" * (width + 2 + max(len(v) for _, v in rows))
    body = "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)
    return f"{line}\nsparsify summary\n{line}\n{body}\n{line}"
