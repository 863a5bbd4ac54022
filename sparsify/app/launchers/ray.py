"""A comparison's runs as Ray tasks, one per grid point, each holding its resources.

``address`` joins an existing cluster (``auto``, ``ray://head:10001``); without it a local
Ray cluster is started for the comparison and shut down after it. A task asks for
``cpus_per_run`` CPUs (default 1) and ``devices_per_run`` GPUs, or ``1 / runs_per_gpu`` of a
GPU to pack small runs; Ray then sets the task's ``CUDA_VISIBLE_DEVICES`` and
``OMP_NUM_THREADS``. The cluster's workers need sparsify and the run folders' file system.
"""

from __future__ import annotations

from functools import partial

import ray
from ray.exceptions import RayError

from sparsify.app.launchers.job import Job, run_job, settle


def task_resources(options, cluster_gpus: float) -> dict:
    """``num_cpus`` and ``num_gpus`` of one run's task."""
    per_run = options.devices_per_run
    if per_run is None:
        per_run = 1 if cluster_gpus else 0
    return {"num_cpus": options.cpus_per_run or 1, "num_gpus": per_run / options.runs_per_gpu}


def run_ray(jobs: list[Job], options, progress) -> list[Job]:
    """Run ``jobs`` as Ray tasks, at most ``options.parallel`` at once (default: as many as the
    cluster's resources allow); return those that failed. Interrupted, it cancels the rest."""
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
    try:
        resources = task_resources(options, ray.cluster_resources().get("GPU", 0))
        task = ray.remote(max_retries=0, **resources)(run_job)
        for job in jobs:
            job.prepare()
        todo, pending, failed = list(jobs), {}, []
        limit = options.parallel or len(jobs)
        try:
            while todo or pending:
                while todo and len(pending) < limit:
                    job = todo.pop(0)
                    pending[task.remote(job)] = job
                    progress.started(list(pending.values()))
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in done:
                    job = pending.pop(ref)
                    running = list(pending.values())
                    settle(job, partial(ray.get, ref), RayError, failed, progress, running)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return failed
    finally:
        if started_here:
            ray.shutdown()
