"""A comparison's runs as one SLURM job array, submitted with submitit.

Each array task runs one grid point (``run_job``): it is given ``nodes`` nodes and
``devices_per_run`` GPUs per node with one task (process) per GPU, so that a run that is itself
multi-GPU DDP finds the ranks srun sets up, which Lightning's ``SLURMEnvironment`` reads (give
the run ``--trainer.devices=<devices_per_run> --trainer.num_nodes=<nodes>``). Where no SLURM is
installed, submitit's local executor runs the same array on this machine.
"""

from __future__ import annotations

import sys
import time

import submitit

from sparsify.launchers.job import Job, run_job, settle

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
    executor.update_parameters(**executor_parameters(options))
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


def describe_array(jobs: list[Job], options) -> str:
    """The sbatch script submitit would submit, and the run of each array index."""
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    # submitit has no public dry run: its own script writer, with its names for the options
    names = SlurmExecutor._equivalence_dict()
    params = {}
    for key, value in executor_parameters(options).items():
        params[key.removeprefix("slurm_") if key.startswith("slurm_") else names[key]] = value
    if "mem" in params:
        params["mem"] = f"{params['mem']}GB"
    folder = options.folder / "%j"
    command = f"{sys.executable} -u -m submitit.core._submit {folder}"
    script = _make_sbatch_string(command=command, folder=folder, map_count=len(jobs), **params)
    lines = [f"{len(jobs)} run(s) as one SLURM job array (dry run: nothing submitted)", script]
    for index, job in enumerate(jobs):
        lines += [f"# array index {index}: {job.title}", " ".join(job.command)]
    return "\n".join(lines)
