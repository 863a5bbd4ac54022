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
import re
import sys
import warnings
from contextlib import contextmanager
from functools import partial, update_wrapper
from importlib import resources
from pathlib import Path
from types import MethodType
from typing import get_args

import lightning as L
import yaml
from jsonargparse import ArgumentError, Namespace
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback, instantiate_class
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden

import sparsify.datamodules
from sparsify.app.summary import format_summary, run_dir, summarize
from sparsify.app.tracking import WandbLogger
from sparsify.checkpoint import allow_checkpoint_globals, read_checkpoint
from sparsify.errors import ConfigError
from sparsify.lightning.module import ImageClassifier, OptimizerName

SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEFAULTS = "defaults.yaml"
MODULE_CLASSES = ["ImageClassifier", "LanguageModel", "Regressor"]
DEFAULT_METHOD = "method/pilot.yaml"


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
    """Merge configs in order: mappings deeply, later values win; ``trainer.callbacks`` add up;
    a later ``class_path`` that differs replaces the whole node (its ``init_args`` too)."""
    merged: dict = {}
    for config in configs:
        callbacks = merged.get("trainer", {}).get("callbacks") or []
        merged = _deep_merge(merged, config)
        new = (config.get("trainer") or {}).get("callbacks")
        if new is not None:
            merged["trainer"]["callbacks"] = callbacks + list(new)
    return merged


def _deep_merge(base: dict, update: dict) -> dict:
    """Merge ``update`` into ``base``; a new ``class_path`` drops the old class's ``init_args``."""
    if "class_path" in update and update["class_path"] != base.get("class_path"):
        base = {}
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


def prepare_argv(argv: list[str], notes: list[str] | None = None) -> list[str]:
    """Replace the ``--config`` arguments of a subcommand by one composed config; ``notes``
    gets what the user should hear of a choice made for them."""
    if not argv or argv[0] not in SUBCOMMANDS:
        return argv
    names, rest = split_configs(argv[1:])
    user = [read_config(name) for name in names]
    has_method = any("callbacks" in (c.get("trainer") or {}) for c in user)
    configs = [read_config(DEFAULTS)] + ([] if has_method else [read_config(DEFAULT_METHOD)])
    composed = compose(configs + user)
    if not has_method:
        note = fit_default_finetuning(composed, rest)
        if note and notes is not None:
            notes.append(note)
    for key, kind in (("data", "datamodule"), ("model", "model class")):
        check_class_path(_class_path(composed.get(key), rest, key), kind)
    return [argv[0], "--config", yaml.safe_dump(composed, sort_keys=False)] + rest


def _class_path(config_value, args: list[str], key: str) -> str | None:
    """The class path of ``key`` after the command-line arguments ``--key=X`` are applied."""
    value = config_value.get("class_path") if isinstance(config_value, dict) else config_value
    for flag in (f"--{key}", f"--{key}.class_path"):
        value = _flag_value(args, flag, value)
    return value


def _flag_value(args: list[str], flag: str, value=None):
    """The last value given to ``flag`` (``--flag=X`` or ``--flag X``) in ``args``, else
    ``value``."""
    for i, arg in enumerate(args):
        if arg.startswith(f"{flag}="):
            value = arg.split("=", 1)[1]
        elif arg == flag and i + 1 < len(args):
            value = args[i + 1]
    return value


def fit_default_finetuning(composed: dict, args: list[str]) -> str | None:
    """Let a short run of the default method work: where its ``PruneAtEnd`` would fine-tune
    for the whole run (``finetune_epochs ≥ max_epochs``), fine-tune for the last epoch only (a
    one-epoch run prunes when training ends); return the note that says so. A
    ``finetune_epochs`` given on the command line is kept as given (``PruneAtEnd`` refuses an
    impossible one)."""
    if _flag_value(args, "--trainer.callbacks.finetune_epochs") is not None:
        return None
    callbacks = composed.get("trainer", {}).get("callbacks") or []
    prune = [c for c in callbacks if str(c.get("class_path", "")).endswith("PruneAtEnd")]
    max_epochs = _flag_value(args, "--trainer.max_epochs", composed["trainer"].get("max_epochs"))
    try:
        max_epochs = int(max_epochs)
    except (TypeError, ValueError):
        return None  # not a number of epochs: PruneAtEnd says what is wrong
    if not prune or max_epochs < 1:
        return None
    init_args = prune[-1].setdefault("init_args", {})
    finetune = int(init_args.get("finetune_epochs", 0))
    if finetune < max_epochs:
        return None
    init_args["finetune_epochs"] = min(1, max_epochs - 1)
    return (
        f"the default method ({DEFAULT_METHOD[:-5]}) fine-tunes {finetune} epochs after "
        f"pruning; this run of {max_epochs} epoch(s) fine-tunes {init_args['finetune_epochs']} "
        "(--trainer.callbacks.finetune_epochs=N sets it)"
    )


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


class SaveRunConfig(SaveConfigCallback):
    """Save the resolved ``config.yaml`` in the run's own folder, beside its checkpoints and
    ``summary.json`` (Lightning's default puts a W&B run's config in the shared root)."""

    def setup(self, trainer, pl_module, stage) -> None:
        if self.already_saved:
            return
        folder = trainer.strategy.broadcast(str(run_dir(trainer)))
        if trainer.is_global_zero:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config,
                str(Path(folder) / self.config_filename),
                skip_none=False,
                overwrite=self.overwrite,
                multifile=self.multifile,
            )
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


class SparsifyCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--wandb",
            type=bool,
            default=True,
            help="Track the run in Weights & Biases (offline without credentials); false "
            "replaces the W&B logger by a CSVLogger.",
        )

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:  # before LightningCLI reads the checkpoint's hyper-parameters
            check_ckpt_path(self.config[subcommand].get("ckpt_path"))

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config)
        trainer = config.trainer
        refuse_sharded_strategy(trainer.strategy)
        loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        for i, logger in enumerate(loggers):
            if not _is_wandb(logger):
                continue
            if not config.wandb:
                loggers[i] = Namespace(
                    class_path="lightning.pytorch.loggers.CSVLogger",
                    init_args=Namespace(save_dir=trainer.default_root_dir or "."),
                )
            elif logger.init_args.get("save_dir") is None:
                logger.init_args.save_dir = trainer.default_root_dir or "."
        trainer.logger = loggers if isinstance(trainer.logger, list) else loggers[0]
        add_progress_bar(trainer)

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        """``--optimizer`` (and ``--lr_scheduler``) for a module without a
        ``configure_optimizers`` of its own. Unlike LightningCLI, which builds the optimizer
        when it parses the command line, we build it when Lightning asks for it: after the
        method's callbacks have made m, w in ``setup``, so they are trained too."""
        optimizer_init = self._get(self.config_init, "optimizer")
        scheduler_init = self._get(self.config_init, "lr_scheduler")
        if not optimizer_init:
            if scheduler_init:
                raise ConfigError("--lr_scheduler needs an --optimizer to schedule")
            return
        if is_overridden("configure_optimizers", self.model):
            raise ConfigError(
                f"--optimizer={optimizer_init['class_path']} is not used: "
                f"{type(self.model).__name__} builds its own optimizer (configure_optimizers); "
                "set its own arguments instead (sparsify's modules: --model.optimizer, one of "
                f"{', '.join(get_args(OptimizerName))})"
            )
        configure = partial(configure_from_cli, optimizer=optimizer_init, scheduler=scheduler_init)
        update_wrapper(configure, configure_from_cli)
        self.model.configure_optimizers = MethodType(configure, self.model)

    def before_fit(self) -> None:
        for callback in self.trainer.callbacks:
            if hasattr(callback, "check_trainer"):
                callback.check_trainer(self.trainer)
        config = self.config.get(self.subcommand, self.config).clone()
        config.pop("config", None)
        for logger in self.trainer.loggers:
            logger.log_hyperparams(config.as_dict())

    def after_fit(self) -> None:
        summary = summarize(self.trainer, self.model, self.datamodule)
        if self.trainer.is_global_zero:
            print(format_summary(summary))
            for logger in self.trainer.loggers:
                if isinstance(logger, WandbLogger):
                    hint = logger.offline_hint()
                    logger.experiment.finish()  # the run's files complete before we return
                    if hint:
                        print(hint)


def add_progress_bar(trainer: Namespace) -> None:
    """A ``TimedProgressBar`` (redrawn at most every 0.25 s; Lightning's default Rich bar redraws
    at every batch), unless the bar is off or the configuration names one."""
    callbacks = trainer.callbacks or []
    if trainer.enable_progress_bar is False or any(
        "ProgressBar" in str(getattr(c, "class_path", type(c).__name__)) for c in callbacks
    ):
        return
    bar = Namespace(class_path="sparsify.app.progress_bar.TimedProgressBar", init_args=Namespace())
    trainer.callbacks = [*callbacks, bar]


def configure_from_cli(module: L.LightningModule, optimizer: dict, scheduler: dict | None):
    """``configure_optimizers`` from the ``--optimizer``/``--lr_scheduler`` configs (class
    path and arguments) over the module's parameters as they are now."""
    built = instantiate_class(module.parameters(), optimizer)
    schedule = instantiate_class(built, scheduler) if scheduler else None
    return LightningCLI.configure_optimizers(module, built, schedule)


def check_ckpt_path(path) -> None:
    """Refuse, in one line, a ``--ckpt_path`` file that is missing, not a checkpoint, or that
    needs full unpickling (``read_checkpoint``), before Lightning reads it; ``best``, ``last``,
    ``hpc`` and ``registry`` are Lightning's to find. LightningCLI reads the file's
    hyper-parameters with ``weights_only=True`` whatever ``--weights_only`` says, so a file that
    needs full unpickling has no opt-in here."""
    if path is None or str(path) in ("best", "last", "hpc") or str(path).startswith("registry"):
        return
    read_checkpoint(path, "ckpt_path", trust_flag=None)


def _is_wandb(logger) -> bool:
    return isinstance(logger, Namespace) and "WandbLogger" in str(logger.get("class_path", ""))


SHARDED = ("fsdp", "deepspeed", "model_parallel", "xla")


def refuse_sharded_strategy(strategy) -> None:
    """Sharded strategies split weight tensors across ranks; masks and m ⊙ w need whole ones."""
    name = strategy if isinstance(strategy, str) else getattr(strategy, "class_path", "")
    name = name or type(strategy).__name__
    if any(s in str(name).lower() for s in SHARDED):
        raise ConfigError(
            f"strategy={name!r} is not supported: sparsify's masks and m ⊙ w parametrizations "
            "need whole weight tensors on every process; use ddp (or ddp_spawn, auto)"
        )


TOOLS = {"compare": "sparsify.app.compare", "export": "sparsify.app.export"}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    with one_line_errors(), allow_checkpoint_globals():
        if argv and argv[0] in TOOLS:
            importlib.import_module(TOOLS[argv[0]]).main(argv[1:])  # exit 0 unless it exits
            return
        notes: list[str] = []
        args = prepare_argv(argv, notes)
        for note in notes:
            rank_zero_info(f"sparsify: {note}")
        # DDP's launcher re-runs sys.argv, which stays the user's own command line.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        build_cli(args)


def build_cli(args: list[str], run: bool = True) -> SparsifyCLI:
    """The ``sparsify`` LightningCLI over ``args`` (``prepare_argv``'s); ``run=False`` builds
    the model, data and trainer without running a subcommand (the iterative driver)."""
    return SparsifyCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf", "exit_on_error": False, "allow_abbrev": False},
        save_config_callback=SaveRunConfig,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


@contextmanager
def one_line_errors():
    """Turn an error in the user's input (see ``user_error``) into one line on stderr and exit
    code 2; let anything else, a bug, show its traceback."""
    try:
        yield
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
        choice = _bad_choice(useful)
        if choice is not None:
            return choice
        message = " ".join(useful[:2]) or lines[0]
        if message.startswith("unrecognized arguments"):
            message += " (`sparsify fit --help` lists the valid options)"
        return message
    return None


def _bad_choice(lines: list[str]) -> str | None:
    """jsonargparse's message for a value outside a ``Literal[...]`` annotation, in the words of
    ``check_choice``: ``model.optimizer='lion' is invalid: choose one of sgd, adamw, adam``."""
    keys = []
    for line in lines:
        key = re.fullmatch(r'Parser key "(.+)":', line)
        if key:
            keys.append(key.group(1))
            continue
        literal = re.fullmatch(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)", line)
        if literal:
            choices = ", ".join(c.strip(" '\"") for c in literal.group(1).split(","))
            value = literal.group(2)
            return f"{'.'.join(keys)}={value!r} is invalid: choose one of {choices}"
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
