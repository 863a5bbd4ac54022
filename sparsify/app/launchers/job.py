"""One run of a comparison as a launcher sees it: a folder, the files to write there, a command.

Every launcher runs a ``Job`` the same way, so the run folders, ``fit.log``, ``run.json`` and
therefore ``results.csv`` do not depend on where the run executed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    title: str  # ``gmp s=0.9 seed=0``
    folder: Path
    command: list[str]  # the ``sparsify fit`` command line
    files: dict[str, str] = field(default_factory=dict)  # written into the folder first
    env: dict[str, str] = field(default_factory=dict)  # added to the environment it runs in

    @property
    def log(self) -> Path:
        return self.folder / "fit.log"

    def prepare(self) -> None:
        """Start from scratch: a folder left by an interrupted attempt is emptied."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        for name, text in self.files.items():
            (self.folder / name).write_text(text)


def finished_summary(folder: Path) -> dict | None:
    """The run's ``summary.json``, or ``None`` if it never finished."""
    for path in folder.glob("**/summary.json"):
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
    return None


def record(job: Job, returncode: int, started: float) -> bool:
    """Whether the run finished (exit 0 and a ``summary.json``); if so ``run.json`` keeps its
    wall time and command."""
    if returncode != 0 or finished_summary(job.folder) is None:
        return False
    run = {"wall_time_s": time.time() - started, "command": job.command}
    (job.folder / "run.json").write_text(json.dumps(run, indent=2))
    return True


def settle(
    job: Job,
    result: Callable[[], object],
    errors: type[BaseException] | tuple[type[BaseException], ...],
    failed: list[Job],
    progress,
    running: list[Job],
    log: object = None,
) -> None:
    """Record the end of a remote ``job``: ``result()`` is its outcome (true: it finished); a
    task that died instead raises one of ``errors``, whose first line the progress notes (with
    the task's ``log`` to see, if given). A job that did not finish joins ``failed``."""
    try:
        ok = bool(result())
    except errors as err:
        ok = False
        text = str(err).strip()
        why = text.splitlines()[0] if text else ""
        progress.note(f"{job.title}: {why}" + (f" (see {log})" if log is not None else ""))
    if not ok:
        failed.append(job)
    progress.finished(job, ok, running)


def run_job(job: Job, log: Path | None = None, rank: int = 0) -> bool:
    """Run an already prepared job to its end in this process's environment (a Ray worker, a
    SLURM task) and return whether it finished. In a run of several processes each writes its
    own log and only rank 0 the record."""
    started = time.time()
    with open(log or job.log, "w") as out:
        env = {**os.environ, **job.env}
        code = subprocess.run(job.command, stdout=out, stderr=subprocess.STDOUT, env=env)
    return record(job, code.returncode, started) if rank == 0 else code.returncode == 0
