"""The ``sparsify`` command: LightningCLI in omegaconf parser mode.

    sparsify fit --config data/digits.yaml --config method/pilot.yaml --trainer.max_epochs=3

``--config`` takes a file or the name of a shipped recipe (``method/pilot``); several compose
in order, later values overriding earlier ones, except ``trainer.callbacks``, which add up.
Without a method recipe (no ``trainer.callbacks`` in any config) the default method applies.
After ``fit`` the final model is saved, tested (before and after pruning when a ``PruneAtEnd``
callback pruned it) and summarized in a table and in ``summary.json`` in the run's log folder.
"""

from __future__ import annotations

import importlib
import json
import sys
from importlib import resources
from pathlib import Path

import lightning as L
import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningCLI

import sparsify.datamodules
from sparsify.callbacks import PruneAtEnd
from sparsify.errors import ConfigError
from sparsify.masks import sparsity_report
from sparsify.module import ImageClassifier

SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEFAULTS = "defaults.yaml"
MODULE_CLASSES = ["ImageClassifier"]
DEFAULT_METHOD = "method/wd_switch_off.yaml"


def shipped_configs() -> list[str]:
    """Names of the recipes shipped in ``sparsify.configs``, e.g. ``method/pilot``."""
    root = resources.files("sparsify.configs")
    names = []
    for folder in root.iterdir():
        if folder.is_dir() and not folder.name.startswith("_"):
            yamls = [f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml")]
            names += [f"{folder.name}/{name}" for name in yamls]
    return sorted(names)


def read_config(name: str) -> dict:
    """Load a config file, or a shipped recipe by name (``method/pilot``)."""
    path = Path(name)
    if not path.is_file():
        shipped = resources.files("sparsify.configs").joinpath(
            name if name.endswith(".yaml") else f"{name}.yaml"
        )
        if not shipped.is_file():
            raise ConfigError(
                f"config {name!r} not found: not a file, nor a shipped recipe "
                f"({', '.join(shipped_configs())})"
            )
        path = shipped
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        first_line = str(err).splitlines()[0]
        raise ConfigError(f"config {name!r} is not valid YAML: {first_line}") from None
    if not isinstance(content, dict):
        kind = type(content).__name__
        raise ConfigError(f"config {name!r} must hold a mapping of keys, not a {kind}")
    return content


def compose(configs: list[dict]) -> dict:
    """Merge configs in order: mappings deeply, later values win; ``trainer.callbacks`` add up."""
    merged: dict = {}
    for config in configs:
        callbacks = merged.get("trainer", {}).get("callbacks") or []
        merged = _deep_merge(merged, config)
        new = (config.get("trainer") or {}).get("callbacks")
        if new is not None:
            merged["trainer"]["callbacks"] = callbacks + list(new)
    return merged


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def split_configs(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate the ``--config`` values from the other arguments."""
    configs, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c"):
            if i + 1 >= len(argv):
                raise ConfigError(f"{arg} needs a value: a config file or a shipped recipe name")
            configs.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--config="):
            configs.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return configs, rest


def prepare_argv(argv: list[str]) -> list[str]:
    """Replace the ``--config`` arguments of a subcommand by one composed config."""
    if not argv or argv[0] not in SUBCOMMANDS:
        return argv
    names, rest = split_configs(argv[1:])
    user = [read_config(name) for name in names]
    has_method = any("callbacks" in (c.get("trainer") or {}) for c in user)
    configs = [read_config(DEFAULTS)] + ([] if has_method else [read_config(DEFAULT_METHOD)])
    composed = compose(configs + user)
    for key, kind in (("data", "datamodule"), ("model", "model class")):
        check_class_path(_class_path(composed.get(key), rest, key), kind)
    return [argv[0], "--config", yaml.safe_dump(composed, sort_keys=False)] + rest


def _class_path(config_value, args: list[str], key: str) -> str | None:
    """The class path of ``key`` after the command-line arguments ``--key=X`` are applied."""
    value = config_value.get("class_path") if isinstance(config_value, dict) else config_value
    for i, arg in enumerate(args):
        for flag in (f"--{key}", f"--{key}.class_path"):
            if arg.startswith(f"{flag}="):
                value = arg.split("=", 1)[1]
            elif arg == flag and i + 1 < len(args):
                value = args[i + 1]
    return value


def check_class_path(class_path: str | None, kind: str) -> None:
    """Fail early, in one line, on a datamodule or model class that cannot be imported."""
    if not isinstance(class_path, str) or class_path.lstrip().startswith(("{", "class_path")):
        return
    module_name, _, name = class_path.rpartition(".")
    known = {"datamodule": sparsify.datamodules.__all__, "model class": MODULE_CLASSES}[kind]
    if not module_name:
        if name in known:
            return
    else:
        try:
            if hasattr(importlib.import_module(module_name), name):
                return
        except ImportError:
            pass
    raise ConfigError(
        f"unknown {kind} {class_path!r}: choose one of {', '.join(known)} (or a full import path)"
    )


class SparsifyCLI(LightningCLI):
    def before_fit(self) -> None:
        for callback in self.trainer.callbacks:
            if hasattr(callback, "check_trainer"):
                callback.check_trainer(self.trainer)

    def after_fit(self) -> None:
        summary = summarize(self.trainer, self.model, self.datamodule)
        print(format_summary(summary))


def summarize(trainer: L.Trainer, model: L.LightningModule, datamodule) -> dict:
    """Save the final model, test it (and its unpruned state), write ``summary.json``."""
    log_dir = Path(trainer.log_dir or trainer.default_root_dir)
    checkpoint = log_dir / "checkpoints" / "final.ckpt"
    trainer.save_checkpoint(checkpoint)
    summary: dict = {"checkpoint": str(checkpoint)}
    if _has_test_data(datamodule):
        summary["test_acc"] = _test_acc(trainer, model, datamodule)
        pruner = next((c for c in trainer.callbacks if isinstance(c, PruneAtEnd)), None)
        if pruner is not None and pruner.unpruned_state_dict is not None:
            final = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(pruner.unpruned_state_dict)
            summary["test_acc_before_pruning"] = _test_acc(trainer, model, datamodule)
            model.load_state_dict(final)
    report = sparsity_report(model)
    summary["sparsity"] = report["global"]
    summary["layer_density"] = {name: 1 - s for name, s in report["layers"].items()}
    if trainer.is_global_zero:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    summary["summary_file"] = str(log_dir / "summary.json")
    return summary


def _has_test_data(datamodule) -> bool:
    base = L.LightningDataModule.test_dataloader
    return datamodule is not None and type(datamodule).test_dataloader is not base


def _test_acc(trainer: L.Trainer, model: L.LightningModule, datamodule) -> float | None:
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    value = results[0].get("test/acc") if results else None
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
    rows.append(("global sparsity", fmt(summary["sparsity"])))
    rows += [(f"  density {name}", fmt(d)) for name, d in summary["layer_density"].items()]
    rows += [("checkpoint", summary["checkpoint"]), ("summary", summary["summary_file"])]
    width = max(len(key) for key, _ in rows)
    line = "-" * (width + 2 + max(len(v) for _, v in rows))
    body = "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)
    return f"{line}\nsparsify summary\n{line}\n{body}\n{line}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        # LightningCLI reads sys.argv; give it the composed arguments there.
        sys.argv = [sys.argv[0], *prepare_argv(argv)]
        SparsifyCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_kwargs={
                "parser_mode": "omegaconf",
                "exit_on_error": False,
                "allow_abbrev": False,
            },
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    except Exception as err:
        message = user_error(err)
        if message is None:
            raise
        print(f"sparsify: error: {message}", file=sys.stderr)
        sys.exit(2)


def user_error(err: BaseException) -> str | None:
    """One line for an error in the user's input (a ``ConfigError`` anywhere in the chain of
    causes, or a parser error); ``None`` for anything else, which is a bug to show in full."""
    seen = err
    while seen is not None:
        if isinstance(seen, ConfigError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    if isinstance(err, ArgumentError):
        lines = [line.strip(" -") for line in str(err).splitlines()]
        useful = [line for line in lines if line and not line.startswith(_PARSER_NOISE)]
        message = " ".join(useful[:2]) or lines[0]
        if message.startswith("unrecognized arguments"):
            message += " (`sparsify fit --help` lists the valid options)"
        return message
    return None


# Lines of jsonargparse's nested messages that name no value the user gave.
_PARSER_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value",
    "Expected a <class 'NoneType'>",
    "Problem with given class_path",
)


__all__ = ["ImageClassifier", "main"]
