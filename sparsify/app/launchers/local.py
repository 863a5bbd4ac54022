"""Runs on this machine, each in its own process: ``parallel`` at a time, each on its own GPUs.

With GPUs, every run sees only the ones it was given (``CUDA_VISIBLE_DEVICES``):
``devices_per_run`` of them, or a share of one when ``runs_per_gpu`` > 1 packs several small
runs on a GPU. Runs wait in order for free devices. Without GPUs, runs share the CPU cores.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

from sparsify.app.launchers.job import Job, record


def visible_gpus() -> list[str]:
    """The GPUs this process may hand out: ``CUDA_VISIBLE_DEVICES``'s list where it is set,
    else every device torch counts."""
    import torch

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    return [d.strip() for d in listed.split(",") if d.strip()][:count]


class DeviceSlots:
    """``runs_per_gpu`` slots on each GPU; a run takes one slot on each of ``devices_per_run``
    GPUs, the least busy first, so that runs spread before they pack."""

    def __init__(self, gpus: list[str], devices_per_run: int, runs_per_gpu: int):
        self.free = {gpu: runs_per_gpu for gpu in gpus}
        self.devices_per_run = devices_per_run

    def take(self) -> list[str] | None:
        ready = [gpu for gpu, slots in self.free.items() if slots > 0]
        if len(ready) < self.devices_per_run:
            return None
        chosen = sorted(ready, key=lambda gpu: -self.free[gpu])[: self.devices_per_run]
        for gpu in chosen:
            self.free[gpu] -= 1
        return chosen

    def give_back(self, gpus: list[str]) -> None:
        for gpu in gpus:
            self.free[gpu] += 1


def thread_limits(parallel: int) -> dict[str, str]:
    """Share the CPU cores among the runs that go at once: more threads than cores makes
    PyTorch's OpenMP workers spin against each other (runs 5-10× slower on 2 cores). Limits the
    user set in the environment are kept."""
    if parallel < 2 or "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallel))}


@dataclass
class Attempt:
    job: Job
    process: subprocess.Popen
    started: float
    gpus: list[str] | None
    log: object  # the open fit.log, or None when the run writes to the terminal


def run_local(jobs: list[Job], options, progress) -> list[Job]:
    """Run ``jobs`` in order, as many at once as ``options.parallel`` and the free devices
    allow; return those that failed. Interrupted, it stops the runs in progress."""
    gpus = visible_gpus()
    per_run = options.devices_per_run if options.devices_per_run is not None else int(bool(gpus))
    slots = DeviceSlots(gpus, per_run, options.runs_per_gpu) if gpus and per_run else None
    parallel = options.parallel or (len(gpus) // per_run * options.runs_per_gpu if slots else 1)
    todo, running, failed = list(jobs), [], []
    try:
        while todo or running:
            while todo and len(running) < parallel:
                # None: no GPU to hand out; [] (devices_per_run 0 beside GPUs): hide them.
                given = slots.take() if slots else ([] if gpus else None)
                if slots and given is None:
                    break
                running.append(_start(todo.pop(0), given, parallel, options.show_output))
                progress.started([a.job for a in running])
            time.sleep(0.2)
            for attempt in [a for a in running if a.process.poll() is not None]:
                running.remove(attempt)
                if attempt.log:
                    attempt.log.close()
                if slots:
                    slots.give_back(attempt.gpus)
                ok = record(attempt.job, attempt.process.returncode, attempt.started)
                if not ok:
                    failed.append(attempt.job)
                progress.finished(attempt.job, ok, [a.job for a in running])
    finally:
        for attempt in running:
            attempt.process.terminate()
        for attempt in running:
            attempt.process.wait()
    return failed


def _start(job: Job, gpus: list[str] | None, parallel: int, show_output: bool) -> Attempt:
    job.prepare()
    env = {**os.environ, **thread_limits(parallel), **job.env}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    log = None if show_output else open(job.log, "w")  # noqa: SIM115
    stderr = subprocess.STDOUT if log else None
    process = subprocess.Popen(job.command, stdout=log, stderr=stderr, env=env)
    return Attempt(job, process, time.time(), gpus, log)
