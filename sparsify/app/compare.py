"""``sparsify compare``: methods × sparsities × seeds, each an ordinary ``sparsify fit`` run.

    sparsify compare --config compare/digits
    sparsify compare --config compare/digits --methods method/dense method/gmp --seeds 0

A comparison file holds ``name``, ``base`` (configs, and ``--key=value`` flags, that every run
shares: data, model, trainer), ``methods`` (method recipes), ``sparsities``, ``seeds``,
``out_dir`` and ``parallel`` (runs at a time); the command-line flags of the same names
override them, and any other ``--trainer.*``, ``--model.*`` or ``--data.*`` flag goes to every
run. Each run gets its method's recipe with the target sparsity written into the callback
arguments the method registry names for it (``sparsify.methods``: ``PruneAtEnd.sparsity``, ...);
a method without one (``method/dense``, family ``reference``) runs once per seed, as the
reference. Runs live in ``<out_dir>/runs/<method>/s<sparsity>/seed<seed>``; one with a
``summary.json`` is done and never re-run, one without (interrupted) is deleted and run again
from scratch. At the end ``results.csv``, ``results.md`` and the plots are
written from every finished run of the grid (``sparsify.app.compare_report``); ``--report-only``
writes them from the runs finished so far and runs nothing, for a grid still running elsewhere.

Where the runs execute is the launcher's business (``sparsify.app.launchers``): ``local`` (this
machine, one GPU set per run), ``ray`` (a task per run) or ``slurm`` (a job array through
submitit); the folders, ``results.csv`` and W&B groups are the same whichever runs them.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm import tqdm

from sparsify.app.cli import (
    DEFAULTS,
    compose,
    one_line_errors,
    prepare_argv,
    read_config,
    shipped_configs,
    split_configs,
)
from sparsify.app.compare_report import log_to_wandb, write_report
from sparsify.app.launchers import LAUNCHERS, Job, LaunchOptions, describe, finished_summary, launch
from sparsify.errors import ConfigError
from sparsify.masks import check_sparsity
from sparsify.methods import (
    CALLBACK_FAMILIES,
    DRIVERS,
    FALLBACK_FAMILIES,
    METHODS,
    MethodRecipe,
    family_of,
)
from sparsify.methods import method as registered_method

GRID_KEYS = ("name", "base", "methods", "sparsities", "seeds", "out_dir", "published")
LAUNCH_KEYS = ("launcher", "parallel", "devices_per_run", "runs_per_gpu", "cpus_per_run")
LAUNCH_KEYS += ("address", "slurm")
KEYS = GRID_KEYS + LAUNCH_KEYS
SLURM_FLAGS = ("partition", "time", "nodes")  # command-line flags for the ``slurm`` settings
TARGET_ARGS = ("sparsity", "final_sparsity")  # a recipe file's callbacks' target arguments
FIT_FLAGS = ("--trainer.", "--model.", "--data.")
FLAGS = {key: key for key in ("name", "methods", "sparsities", "seeds", *LAUNCH_KEYS[:-1])}
FLAGS["out_dir"] = "out"  # comparison-file key: command-line flag that overrides it
SETTINGS_FILE = "comparison.json"
DRIVER_MODULES = {"iterative": "sparsify.app.iterative"}  # runs a driver's recipe as a fit run
SIGN_FLIPS = "signin/flips_since_init"  # in summary.json where the run tracks sign flips


@dataclass
class Method:
    name: str  # as given: a shipped recipe (``method/gmp``) or a file
    label: str  # ``gmp``
    recipe: dict
    family: str  # sparsify.methods.FAMILIES: ``reference`` (no target sparsity), ``PaI``, ...
    targets: tuple[str, ...] = ()  # ``Class.argument`` set to the target sparsity
    driver: str | None = None  # sparsify.methods.DRIVERS: run by a driver, not ``sparsify fit``


@dataclass
class Run:
    method: Method
    sparsity: float | None  # None: a method without target sparsity (dense)
    seed: int
    folder: Path

    @property
    def title(self) -> str:
        target = "" if self.sparsity is None else f" s={self.sparsity:g}"
        return f"{self.method.label}{target} seed={self.seed}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ConfigError(f"{message} (`sparsify compare --help` lists the options)")


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The compare options, and the ``--trainer.*``/``--model.*``/``--data.*`` flags for fit."""
    parser = _Parser(prog="sparsify compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="comparison file or shipped name (compare/digits)")
    parser.add_argument("--name", help="comparison name: W&B group, default out folder")
    parser.add_argument("--methods", nargs="+", help="method recipes (method/gmp or a file)")
    parser.add_argument("--sparsities", nargs="+", type=float, help="target sparsities")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (seed_everything)")
    parser.add_argument("--out", help="output folder (default comparisons/<name>)")
    parser.add_argument(
        "--launcher", choices=LAUNCHERS, help="where the runs execute (default local)"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        help="runs at a time (default: local 1 on CPU, one per GPU set; ray and slurm: all)",
    )
    parser.add_argument(
        "--devices-per-run", type=int, help="GPUs per run (default 1 where GPUs are seen, else 0)"
    )
    parser.add_argument(
        "--runs-per-gpu", type=int, help="pack this many one-GPU runs on each GPU (default 1)"
    )
    parser.add_argument("--cpus-per-run", type=int, help="ray: num_cpus; slurm: cpus_per_task")
    parser.add_argument("--address", help="ray: the cluster to join (default: a local one)")
    parser.add_argument("--partition", help="slurm: partition")
    parser.add_argument("--time", type=int, help="slurm: time limit per run in minutes")
    parser.add_argument("--nodes", type=int, help="slurm: nodes per run (default 1)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would run or be submitted, and stop"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the table and plots of the runs finished so far, run nothing",
    )
    parser.add_argument(
        "--wandb", type=_bool, default=True, help="track runs in W&B, grouped by name"
    )
    parser.add_argument(
        "--density-at", type=float, help="sparsity of the layer-density plot (a grid value)"
    )
    parser.add_argument(
        "--lightning-progress-bar",
        action="store_true",
        help="show each run's own output and progress bar instead of writing it to fit.log",
    )
    args, fit_args = parser.parse_known_args(argv)
    for arg in fit_args:
        if arg.startswith("-") and not arg.startswith(FIT_FLAGS):
            raise ConfigError(
                f"unrecognized argument {arg}: compare passes only --trainer.*, --model.* and "
                "--data.* flags on to the runs (`sparsify compare --help` lists its options)"
            )
    return args, fit_args


def load_settings(args: argparse.Namespace, fit_args: list[str]) -> dict:
    """The comparison file's values, overridden by the command line, checked."""
    settings = read_config(args.config) if args.config else {}
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {args.config!r}: allowed keys are {', '.join(KEYS)}"
        )
    settings["published"] = check_published(
        settings.get("published") or {}, settings.get("methods") or []
    )
    for key, flag in FLAGS.items():
        if getattr(args, flag) is not None:
            settings[key] = getattr(args, flag)
    default_name = Path(args.config).stem if args.config else "comparison"
    settings.setdefault("name", default_name)
    settings.setdefault("out_dir", f"comparisons/{settings['name']}")
    slurm = settings.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise ConfigError(f"slurm={slurm!r} is invalid: must be a mapping (partition, time, ...)")
    settings["slurm"] = {**slurm}
    for key in SLURM_FLAGS:
        if getattr(args, key) is not None:
            settings["slurm"][key] = getattr(args, key)
    base = settings.get("base") or []
    settings["base"] = [base] if isinstance(base, str) else base
    if not isinstance(settings["base"], list) or not all(isinstance(b, str) for b in base):
        raise ConfigError(
            f"base={base!r} is invalid: must be a list of config names or files and "
            "--key=value flags"
        )
    settings["fit_args"] = fit_args
    for key in ("methods", "sparsities", "seeds"):
        values = settings.get(key)
        if values is None or values == []:
            raise ConfigError(f"empty grid: no {key} given (in the comparison file or --{key})")
        if not isinstance(values, list):
            raise ConfigError(f"{key}={values!r} is invalid: must be a list")
    settings["sparsities"] = [_number(s, "sparsity") for s in settings["sparsities"]]
    for s in settings["sparsities"]:
        check_sparsity(s)
    settings["seeds"] = [_integer(s, "seed") for s in settings["seeds"]]
    return settings


def check_published(published: dict, methods: list) -> dict:
    """The paper's numbers shown beside the measured ones: ``{label: top-1 %}`` for a method
    without target sparsity, ``{label: {sparsity: top-1 %}}`` for the others; each label one of
    the comparison file's ``methods``."""
    if not isinstance(published, dict):
        raise ConfigError(
            f"published={published!r} is invalid: must map method labels to a number, or to "
            "{sparsity: number}"
        )
    labels = [method_label(name) for name in methods if isinstance(name, str)]
    checked = {}
    for label, value in published.items():
        if label not in labels:
            raise ConfigError(
                f"published has numbers for {label!r}, which is not one of the methods "
                f"({', '.join(labels)})"
            )
        if isinstance(value, dict):
            checked[label] = {
                _number(s, "published sparsity"): _number(v, "published accuracy")
                for s, v in value.items()
            }
        else:
            checked[label] = _number(value, f"published accuracy of {label}")
    return checked


def launch_options(settings: dict, show_output: bool = False) -> LaunchOptions:
    """The launcher and the resources of each run, checked."""
    options = {key: settings[key] for key in LAUNCH_KEYS if settings.get(key) is not None}
    options = LaunchOptions(**options, show_output=show_output)
    options.folder = Path(settings["out_dir"]) / options.launcher
    return options.check()


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what}={value!r} is invalid: must be a number")
    return float(value)


def _integer(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what}={value!r} is invalid: must be an integer")
    return value


def method_label(name: str) -> str:
    """``method/gmp`` → ``gmp``; ``method/ham+method/acdc`` → ``ham+acdc``."""
    return "+".join(Path(part).stem for part in name.split("+"))


def load_method(name: str) -> Method:
    """A method recipe, its label, family and targets: a registered name (``method/gmp``,
    ``sparsify.methods``) or a recipe file of one's own, whose family is that of its callbacks
    (``sparsify.methods.CALLBACK_FAMILIES``, then ``FALLBACK_FAMILIES``) and whose targets are
    the arguments ``sparsity`` and ``final_sparsity`` of its callbacks (a file with an
    ``iterative_pruning`` section runs the iterative driver, its target
    ``iterative_pruning.sparsity``). ``method/ham+method/acdc``
    composes recipes as ``sparsify fit`` composes ``--config``s (callbacks add up, in order),
    labelled ``ham+acdc``, of the family of its first part that prunes."""
    parts = name.split("+")
    registered = [_registered(part) for part in parts]
    own = [read_config(entry.recipe if entry else part) for part, entry in zip(parts, registered)]
    recipe = compose(own)
    callbacks = (recipe.get("trainer") or {}).get("callbacks")
    if not isinstance(callbacks, list):
        raise ConfigError(
            f"method {name!r} has no trainer.callbacks list: a method recipe lists its callbacks "
            "(method/dense lists none)"
        )
    for callback in callbacks:
        _callback_class(name, callback)  # every class imports
    entries = [
        entry or _file_entry(name, part, config)
        for part, entry, config in zip(parts, registered, own)
    ]
    driver = next((entry.driver for entry in entries if entry.driver), None)
    if driver is not None and len(parts) > 1:
        raise ConfigError(
            f"method {name!r} is invalid: a method run by the {driver} driver composes with no "
            "other recipe"
        )
    return Method(
        name=name,
        label=method_label(name),
        recipe=recipe,
        family=family_of([entry.family for entry in entries]),
        targets=tuple(dict.fromkeys(t for entry in entries for t in entry.targets)),
        driver=driver,
    )


def _registered(part: str) -> MethodRecipe | None:
    """The registered method ``part`` names; ``None`` for a file."""
    if Path(part).is_file():
        return None
    registered = [f"method/{n}" for n in sorted(METHODS)]
    if part.removesuffix(".yaml") not in registered:
        shipped = [n for n in shipped_configs() if n.startswith("method/")]
        if part.removesuffix(".yaml") in shipped:
            raise ConfigError(
                f"method {part!r} is shipped but not registered: add it to sparsify.methods "
                f"(registered: {', '.join(registered)})"
            )
        raise ConfigError(
            f"unknown method {part!r}: not a file, nor a shipped recipe ({', '.join(registered)})"
        )
    return registered_method(part)


def _file_entry(name: str, path: str, recipe: dict) -> MethodRecipe:
    """What a recipe file of one's own is: its driver, or its callbacks' family and targets."""
    label = Path(path).stem
    for driver, section in DRIVERS.items():
        if section in recipe:
            return MethodRecipe(label, "dense-to-sparse", (f"{section}.sparsity",), path, driver)
    callbacks = (recipe.get("trainer") or {}).get("callbacks") or []
    classes = [_callback_class(name, callback) for callback in callbacks]
    targets = tuple(f"{c.__name__}.{_target_arg(c)}" for c in classes if _target_arg(c))
    return MethodRecipe(label, _file_family(classes), targets, path)


def _file_family(classes: list[type]) -> str:
    for families in (CALLBACK_FAMILIES, FALLBACK_FAMILIES):
        for cls in classes:
            for base in cls.__mro__:
                if base.__name__ in families:
                    return families[base.__name__]
    return "dense-to-sparse" if any(_target_arg(cls) for cls in classes) else "reference"


def _callback_class(method: str, callback) -> type:
    class_path = callback.get("class_path") if isinstance(callback, dict) else callback
    if not isinstance(class_path, str):
        raise ConfigError(f"method {method!r}: callback {callback!r} has no class_path")
    module_name, _, class_name = class_path.rpartition(".")
    for module in [module_name] if module_name else ["sparsify.callbacks", "lightning.pytorch"]:
        try:
            cls = getattr(importlib.import_module(module), class_name, None)
        except ImportError:
            cls = None
        if inspect.isclass(cls):
            return cls
    raise ConfigError(f"method {method!r}: callback class {class_path!r} cannot be imported")


def _target_arg(cls: type) -> str | None:
    parameters = inspect.signature(cls).parameters
    return next((arg for arg in TARGET_ARGS if arg in parameters), None)


def with_sparsity(method: Method, sparsity: float) -> dict:
    """The recipe with ``sparsity`` as each of the method's targets (``Class.argument``): the
    argument of every callback of that class, or of the driver's section."""
    recipe = copy.deepcopy(method.recipe)
    for target in method.targets:  # a driver's own argument (``iterative_pruning.sparsity``)
        section, arg = target.split(".")
        if isinstance(recipe.get(section), dict):
            recipe[section][arg] = sparsity
    for i, callback in enumerate(recipe["trainer"]["callbacks"]):
        class_name = _callback_class(method.name, callback).__name__
        args = [t.split(".")[1] for t in method.targets if t.split(".")[0] == class_name]
        if not args:
            continue
        if not isinstance(callback, dict):
            callback = recipe["trainer"]["callbacks"][i] = {"class_path": callback}
        for arg in args:
            callback.setdefault("init_args", {})[arg] = sparsity
    return recipe


def make_grid(settings: dict) -> list[Run]:
    methods = [load_method(name) for name in dict.fromkeys(settings["methods"])]
    labels = [m.label for m in methods]
    if len(set(labels)) < len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise ConfigError(f"two methods are named {twice!r}: give their recipe files other names")
    root = Path(settings["out_dir"]) / "runs"
    runs = []
    for method in methods:
        targets = [None] if method.family == "reference" else dict.fromkeys(settings["sparsities"])
        for sparsity in targets:
            for seed in dict.fromkeys(settings["seeds"]):
                folder = root / method.label
                if sparsity is not None:
                    folder = folder / f"s{sparsity:g}"
                runs.append(Run(method, sparsity, seed, folder / f"seed{seed}"))
    return runs


def check_same_settings(settings: dict) -> None:
    """Finished runs are kept, so the runs they join must be made the same way."""
    path = Path(settings["out_dir"]) / SETTINGS_FILE
    shared = {"base": settings["base"], "fit_args": settings["fit_args"]}
    if path.is_file() and json.loads(path.read_text()) != shared:
        raise ConfigError(
            f"{settings['out_dir']} holds runs made with other base configs or flags "
            f"({path}): choose another --out, or delete that folder"
        )


def base_args(settings: dict) -> list[str]:
    """``base`` as ``sparsify fit`` arguments: ``--config`` for each config, then the flags."""
    configs = [item for item in settings["base"] if not item.startswith("-")]
    flags = [item for item in settings["base"] if item.startswith("-")]
    return [arg for name in configs for arg in ("--config", name)] + flags


def fit_command(run: Run, settings: dict, wandb: bool, progress_bar: bool) -> list[str]:
    """The run's ``sparsify fit`` command: base configs, the method with its target sparsity
    (``method.yaml`` in the run folder), base flags, command-line flags, seed, folder; for a
    method run by a driver, the driver's command with its arguments (``<driver>.yaml``)."""
    command = [sys.executable, "-m", "sparsify", "fit", *base_args(settings)]
    if run.method.driver is not None:
        driver_file = str(run.folder / f"{run.method.driver}.yaml")
        module = DRIVER_MODULES[run.method.driver]
        command[2:4] = [module, "--driver", driver_file, "fit"]
    command += ["--config", str(run.folder / "method.yaml"), *settings["fit_args"]]
    command += [f"--seed_everything={run.seed}", f"--trainer.default_root_dir={run.folder}"]
    command += [f"--trainer.enable_progress_bar={str(progress_bar).lower()}"]
    if wandb:
        name = run.title.replace(" ", "-").replace("=", "")
        command += [f"--trainer.logger.init_args.group={settings['name']}"]
        command += [f"--trainer.logger.init_args.name={name}"]
    else:
        command += ["--wandb=false"]
    return command


def wandb_project(settings: dict) -> str:
    """The W&B project the runs log to: the one the base configs and flags name."""
    configs, flags = split_configs(base_args(settings))
    composed = compose([read_config(DEFAULTS), *(read_config(name) for name in configs)])
    logger = (composed.get("trainer") or {}).get("logger")
    project = (
        ((logger or {}).get("init_args") or {}).get("project") if isinstance(logger, dict) else None
    )
    for flag in [*flags, *settings["fit_args"]]:
        if flag.startswith("--trainer.logger.init_args.project="):
            project = flag.split("=", 1)[1]
    return project or "sparsify"


def job_for(run: Run, settings: dict, wandb: bool, progress_bar: bool) -> Job:
    """The launcher's view of a run: its folder, ``method.yaml`` (the recipe with its target
    sparsity; a driver's arguments in ``<driver>.yaml``), its command."""
    recipe = run.method.recipe
    if run.sparsity is not None:
        recipe = with_sparsity(run.method, run.sparsity)
    files = {}
    if run.method.driver is not None:
        recipe = dict(recipe)
        arguments = recipe.pop(DRIVERS[run.method.driver])
        files[f"{run.method.driver}.yaml"] = yaml.safe_dump(arguments, sort_keys=False)
    files["method.yaml"] = yaml.safe_dump(recipe, sort_keys=False)
    command = fit_command(run, settings, wandb, progress_bar)
    return Job(run.title, run.folder, command, files=files)


class Progress:
    """One bar for the grid (runs done, ETA, the runs in progress) on stderr."""

    def __init__(self, runs: list[Run], todo: int, name: str):
        self.bar = tqdm(total=len(runs), initial=len(runs) - todo, unit="run", desc=name)

    def started(self, running: list[Job]) -> None:
        self.bar.set_postfix_str(", ".join(job.title for job in running))

    def finished(self, job: Job, ok: bool, running: list[Job]) -> None:
        if not ok:
            self.note(f"{job.title} failed, see {job.log}")
        self.bar.update(1)
        self.started(running)

    def note(self, line: str) -> None:
        self.bar.write(f"sparsify compare: {line}", file=sys.stderr)


def result_rows(runs: list[Run]) -> list[dict]:
    """One row per finished run of the grid (``sparsify.app.compare_report.COLUMNS``)."""
    rows = []
    for run in runs:
        summary = finished_summary(run.folder)
        if summary is None:
            continue
        record_file = run.folder / "run.json"
        record = json.loads(record_file.read_text()) if record_file.is_file() else {}
        rows.append(
            {
                "method": run.method.label,
                "model": summary.get("model"),
                "sparsity_target": run.sparsity,
                "seed": run.seed,
                "test_acc": summary.get("test_acc"),
                "family": run.method.family,
                "val_acc": summary.get("val_acc"),
                "test_acc_before_pruning": summary.get("test_acc_before_pruning"),
                "sparsity": summary.get("sparsity"),
                "inference_flops": relative_flops(summary),
                "train_flops": summary.get("train_flops"),
                "sign_flips": summary.get(SIGN_FLIPS),
                "wall_time_s": record.get("wall_time_s"),
                "run_dir": str(run.folder),
                "layer_density": summary.get("layer_density", {}),
            }
        )
    return rows


def relative_flops(summary: dict) -> float | None:
    """The final model's inference FLOPs over the dense model's (``summary.json``)."""
    sparse, dense = summary.get("inference_flops"), summary.get("dense_inference_flops")
    return None if sparse is None or not dense else sparse / dense


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> None:
    with one_line_errors():
        args, fit_args = parse_args(argv)
        settings = load_settings(args, fit_args)
        options = launch_options(settings, args.lightning_progress_bar)
        runs = make_grid(settings)
        prepare_argv(["fit", *base_args(settings), *fit_args])  # base configs exist, classes too
        density_at = args.density_at
        if density_at is None:
            density_at = sorted(settings["sparsities"])[(len(settings["sparsities"]) - 1) // 2]
        if density_at not in settings["sparsities"]:
            raise ConfigError(
                f"density-at={density_at:g} is invalid: choose one of the grid's sparsities "
                f"({', '.join(f'{s:g}' for s in settings['sparsities'])})"
            )
        check_same_settings(settings)
        project = wandb_project(settings)

    todo = [run for run in runs if finished_summary(run.folder) is None]
    jobs = [job_for(run, settings, args.wandb, args.lightning_progress_bar) for run in todo]
    if args.dry_run:
        print(
            describe(jobs, options) if jobs else f"nothing to submit: all {len(runs)} runs are done"
        )
        return
    out = Path(settings["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        for path in write_report(result_rows(runs), out, density_at, settings["published"]):
            print(f"wrote {path}")
        print(f"{len(runs) - len(todo)} of {len(runs)} runs finished")
        return
    shared = {"base": settings["base"], "fit_args": settings["fit_args"]}
    (out / SETTINGS_FILE).write_text(json.dumps(shared, indent=2))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    progress = Progress(runs, len(todo), settings["name"])
    try:
        failed = launch(jobs, options, progress) if jobs else []
    except KeyboardInterrupt:
        print(
            "sparsify compare: interrupted; run the same command again to resume "
            "(finished runs are kept)",
            file=sys.stderr,
        )
        sys.exit(130)
    finally:
        progress.bar.close()
        signal.signal(signal.SIGTERM, previous)
    for path in write_report(result_rows(runs), out, density_at, settings["published"]):
        print(f"wrote {path}")
    if args.wandb:
        print(f"W&B: plots and table logged to {log_to_wandb(out, settings['name'], project)}")
    if failed:
        print(f"sparsify compare: {len(failed)} run(s) failed; rerun to retry", file=sys.stderr)
        for job in failed:
            print(f"  {job.title}: {job.log}", file=sys.stderr)
        sys.exit(1)
