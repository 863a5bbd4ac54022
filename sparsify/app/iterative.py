"""IMP and LRR as a ``sparsify fit`` run: the iterative driver over the configs of the command.

    python -m sparsify.app.iterative --driver imp.yaml fit --config data/digits.yaml ...

``--driver`` names a file of ``iterative_pruning`` arguments (``sparsity``, ``rounds``,
``rewind``, ...: ``sparsify.lightning.iterative.iterative_pruning``); the rest is a
``sparsify fit`` command line. Its model, data and trainer are built once from the configs as
``sparsify fit`` builds them; every round trains under a fresh trainer of the same config (the
callbacks and the logger carry from round to round, so the run has one folder, and
``FlopsMonitor`` counts the training of every round). After the last round the run ends as a
``sparsify fit`` run does: final checkpoint, test, ``summary.json``, with ``rounds`` added (the
measured sparsity and the final metrics of each training). ``sparsify compare`` runs the
registered iterative methods (``method/imp``, ``method/lrr``) this way.
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback

from sparsify.app.cli import (
    build_cli,
    one_line_errors,
    prepare_argv,
    read_config,
    split_configs,
)
from sparsify.app.summary import run_dir
from sparsify.checkpoint import allow_checkpoint_globals
from sparsify.errors import ConfigError
from sparsify.lightning.iterative import iterative_pruning

# What a driver file may set: the driver's own arguments, less the ones the run provides.
DRIVER_ARGS = tuple(
    name
    for name in inspect.signature(iterative_pruning).parameters
    if name not in ("module", "make_trainer", "after_round", "fit_kwargs")
)


def read_driver(path: str) -> dict:
    """The ``iterative_pruning`` arguments in ``path``, with no other key."""
    arguments = read_config(path)
    unknown = sorted(set(arguments) - set(DRIVER_ARGS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {path!r}: the iterative driver takes "
            f"{', '.join(DRIVER_ARGS)}"
        )
    if "sparsity" not in arguments:
        raise ConfigError(f"{path!r} sets no sparsity: the iterative driver needs its target")
    return arguments


def split_driver(argv: list[str]) -> tuple[str, list[str]]:
    """``--driver FILE`` and the ``sparsify fit`` command line that follows it."""
    if len(argv) < 3 or argv[0] != "--driver" or argv[2] != "fit":
        raise ConfigError(
            "usage: python -m sparsify.app.iterative --driver FILE fit [sparsify fit options]"
        )
    return argv[1], argv[3:]


def main(argv: list[str]) -> None:
    with one_line_errors(), allow_checkpoint_globals():
        driver_file, fit_argv = split_driver(argv)
        arguments = read_driver(driver_file)
        names, _ = split_configs(fit_argv)
        if not any("callbacks" in (read_config(n).get("trainer") or {}) for n in names):
            raise ConfigError(
                "the iterative driver needs a method config (trainer.callbacks: [] for none), "
                "else sparsify fit's default method would train inside every round"
            )
        args = prepare_argv(["fit", *fit_argv])[1:]
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = build_cli(args, run=False)
        callbacks = cli.config_init["trainer"]["callbacks"] or []
        shared = [c for c in callbacks if not isinstance(c, SaveConfigCallback)]
        trainers: list[L.Trainer] = []

        def make_trainer(extra: list[L.Callback]) -> L.Trainer:
            cli.trainer = cli.instantiate_trainer(callbacks=[*shared, *extra])
            if not trainers:
                cli.before_fit()  # the callbacks' trainer checks, the hyper-parameters logged
            trainers.append(cli.trainer)
            return cli.trainer

        records = iterative_pruning(cli.model, make_trainer, datamodule=cli.datamodule, **arguments)
    path = run_dir(cli.trainer) / "summary.json"
    cli.after_fit()  # final checkpoint, test, summary.json: of the last round, as sparsify fit
    if cli.trainer.is_global_zero:
        summary = json.loads(path.read_text())
        summary["rounds"] = records
        path.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
