"""A comparison's runs as one SLURM job array, submitted with submitit.

Each array task runs one grid point (``run_job``): it is given ``nodes`` nodes and
``devices_per_run`` GPUs per node with one task (process) per GPU, so that a run that is itself
multi-GPU DDP finds the ranks srun sets up, which Lightning's ``SLURMEnvironment`` reads (give
the run ``--trainer.devices=<devices_per_run> --trainer.num_nodes=<nodes>``). Where no SLURM is
installed, submitit's local executor runs the same array on this machine.
"""

from __future__ import annotations

import shlex
import sys
import time

import submitit

from sparsify.app.launchers.job import Job, run_job, settle

DEFAULT_TIME_MIN = 60


def executor_parameters(options) -> dict:
    """``submitit.AutoExecutor.update_parameters`` arguments for one array task (one run)."""
    slurm = options.slurm
    gpus = options.devices_per_run or 0
    params = {
        "name": "sparsify-compare",
        "timeout_min": slurm.get("time", DEFAULT_TIME_MIN),
        "nodes": slurm.get("nodes", 1),
        "tasks_per_node": max(gpus, 1),
        "gpus_per_node": gpus,
        "cpus_per_task": options.cpus_per_run,
        "mem_gb": slurm.get("mem_gb"),
        "slurm_partition": slurm.get("partition"),
        "slurm_account": slurm.get("account"),
        "slurm_qos": slurm.get("qos"),
        "slurm_array_parallelism": options.parallel,
        "slurm_setup": slurm.get("setup"),
        "slurm_additional_parameters": slurm.get("additional"),
    }
    return {key: value for key, value in params.items() if value is not None}


def _run_task(job: Job) -> bool:
    rank = submitit.JobEnvironment().global_rank
    log = job.log if rank == 0 else job.folder / f"fit.rank{rank}.log"
    return run_job(job, log, rank)


def run_slurm(jobs: list[Job], options, progress) -> list[Job]:
    """Submit ``jobs`` as one array, wait for it and return the runs that failed. Interrupted,
    it cancels the array's unfinished tasks."""
    executor = submitit.AutoExecutor(folder=options.folder / "%j")
    if executor.cluster != "slurm":
        print(
            "sparsify compare: no SLURM here (sbatch not found): the job array runs with "
            "submitit's local executor",
            file=sys.stderr,
        )
    # submitit's own default would cap the array at 256 tasks at a time: all run, as --dry-run says
    params = {"slurm_array_parallelism": len(jobs), **executor_parameters(options)}
    executor.update_parameters(**params)
    for job in jobs:
        job.prepare()
    pending = dict(zip(executor.map_array(_run_task, jobs), jobs))
    progress.started(list(pending.values()))
    failed = []
    try:
        while pending:
            time.sleep(1.0)
            for task in [t for t in pending if t.done()]:
                job = pending.pop(task)
                # A task that died raises from result(): submitit's log says why.
                running, log = list(pending.values()), task.paths.stderr
                settle(job, task.result, Exception, failed, progress, running, log)
    finally:
        for task in pending:
            task.cancel(check=False)
    return failed


# submitit's names for the array task's resources, and sbatch's
SBATCH_OPTIONS = {
    "name": "job-name",
    "slurm_partition": "partition",
    "slurm_account": "account",
    "slurm_qos": "qos",
    "timeout_min": "time",
    "nodes": "nodes",
    "tasks_per_node": "ntasks-per-node",
    "gpus_per_node": "gpus-per-node",
    "cpus_per_task": "cpus-per-task",
    "mem_gb": "mem",
}


def describe_array(jobs: list[Job], options) -> str:
    """For ``--dry-run``: the sbatch options of the array that ``run_slurm`` would submit (the
    parameters it gives submitit, in sbatch's words), and the run of each array index. submitit
    adds its own log paths, signal handling and launch command when it submits."""
    if not jobs:
        return "nothing to submit: no runs"
    params = executor_parameters(options)
    parallel = min(len(jobs), params.get("slurm_array_parallelism", len(jobs)))
    lines = [
        f"{len(jobs)} run(s) as one SLURM job array (dry run: nothing submitted)",
        "#!/bin/bash",
        f"#SBATCH --array=0-{len(jobs) - 1}%{parallel}",
    ]
    for key, flag in SBATCH_OPTIONS.items():
        if key in params:
            value = f"{params[key]}GB" if key == "mem_gb" else params[key]
            lines.append(f"#SBATCH --{flag}={shlex.quote(str(value))}")
    for key, value in (params.get("slurm_additional_parameters") or {}).items():
        flag = key.replace("_", "-")
        lines.append(f"#SBATCH --{flag}" if value is True else f"#SBATCH --{flag}={value}")
    lines += params.get("slurm_setup") or []
    lines.append(f"# each task: srun {sys.executable} -u -m submitit.core._submit <folder>")
    lines.append(f"# submitit's files: {options.folder}/<job id>_<array index>/")
    for index, job in enumerate(jobs):
        lines += [f"# array index {index}: {job.title}", " ".join(job.command)]
    return "\n".join(lines)
