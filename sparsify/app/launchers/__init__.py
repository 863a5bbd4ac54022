"""Where a comparison's runs execute: this machine, a Ray cluster or a SLURM cluster.

Scheduling is the engines' job: ``local`` starts processes and hands out this machine's GPUs,
``ray`` submits one Ray task per run with its resources, ``slurm`` submits one job array
through submitit. Every launcher runs the same ``Job`` (``sparsify.app.launchers.job``), so run
folders and results do not depend on the launcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from sparsify.app.launchers.job import Job, finished_summary, run_job
from sparsify.errors import ConfigError, check_choice

Launcher = Literal["local", "ray", "slurm"]
LAUNCHERS = get_args(Launcher)


@dataclass
class LaunchOptions:
    launcher: Launcher = "local"
    parallel: int | None = None  # runs at a time; None: as many as the resources allow
    devices_per_run: int | None = None  # GPUs per run; None: 1 where GPUs are seen, else 0
    runs_per_gpu: int = 1  # > 1 packs small runs on one GPU (local; a GPU fraction on Ray)
    cpus_per_run: int | None = None  # Ray num_cpus (default 1), SLURM cpus_per_task
    address: str | None = None  # Ray cluster; None: a local Ray cluster started here
    slurm: dict = field(default_factory=dict)  # partition, time (minutes), nodes, account, ...
    show_output: bool = False  # local: runs write to the terminal instead of fit.log
    folder: Path = Path(".")  # where the engine keeps its own files (submitit's logs)

    def check(self) -> LaunchOptions:
        check_choice("launcher", self.launcher, Launcher)
        for name, least in (("parallel", 1), ("devices_per_run", 0), ("cpus_per_run", 1)):
            _check_int(name, getattr(self, name), least, optional=True)
        _check_int("runs_per_gpu", self.runs_per_gpu, 1)
        if self.runs_per_gpu > 1 and (self.devices_per_run or 1) > 1:
            raise ConfigError(
                f"runs_per_gpu={self.runs_per_gpu} with devices_per_run={self.devices_per_run} "
                "is invalid: packing runs on a GPU is for runs of one GPU"
            )
        if self.address is not None and self.launcher != "ray":
            raise ConfigError(f"address={self.address!r} is for --launcher ray only")
        if self.launcher != "slurm" and self.slurm:
            raise ConfigError(
                f"slurm settings ({', '.join(self.slurm)}) are for --launcher slurm only"
            )
        unknown = sorted(set(self.slurm) - set(SLURM_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown slurm setting {unknown[0]!r}: allowed are {', '.join(SLURM_KEYS)}"
            )
        for name in ("time", "nodes"):
            _check_int(name, self.slurm.get(name), 1, optional=True)
        if self.launcher == "local" and self.devices_per_run:
            from sparsify.app.launchers.local import visible_gpus

            gpus = visible_gpus()
            if self.devices_per_run > len(gpus):
                raise ConfigError(
                    f"devices_per_run={self.devices_per_run} is invalid: {len(gpus)} GPU(s) "
                    "visible here (CUDA_VISIBLE_DEVICES); 0 runs on the CPU"
                )
        return self


SLURM_KEYS = ("partition", "time", "nodes", "account", "qos", "mem_gb", "additional", "setup")


def _check_int(name: str, value, least: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name}={value!r} is invalid: must be an integer >= {least}")


def launch(jobs: list[Job], options: LaunchOptions, progress) -> list[Job]:
    """Run ``jobs`` with the chosen launcher; return those that failed. ``progress`` hears of
    each start (``started(running)``) and end (``finished(job, ok, running)``)."""
    if options.launcher == "local":
        from sparsify.app.launchers.local import run_local

        return run_local(jobs, options, progress)
    if options.launcher == "ray":
        from sparsify.app.launchers.ray import run_ray

        return run_ray(jobs, options, progress)
    from sparsify.app.launchers.slurm import run_slurm

    return run_slurm(jobs, options, progress)


def describe(jobs: list[Job], options: LaunchOptions) -> str:
    """What ``launch`` would do, for ``--dry-run``."""
    if options.launcher == "slurm":
        from sparsify.app.launchers.slurm import describe_array

        return describe_array(jobs, options)
    lines = [f"{len(jobs)} run(s) with the {options.launcher} launcher:"]
    for job in jobs:
        lines += [f"# {job.title}", " ".join(job.command)]
    return "\n".join(lines)


__all__ = ["LAUNCHERS", "Job", "LaunchOptions", "describe", "finished_summary", "launch", "run_job"]
