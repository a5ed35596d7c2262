"""Where the study's runs execute: a local process pool (the default) or submitit jobs.

Both are generators with one contract: given the runs still to do, they yield one
:class:`Finished` per run as it finishes (in finishing order), so ``run.py`` keeps one loop
that records each run's rows the moment it comes back.  A run that raises a
``BayesHaloError`` (e.g. divergence) comes back with its message and no rows.

submitit (https://github.com/facebookincubator/submitit) submits each run as its own job to
SLURM (``cluster="slurm"``), or starts it as a local subprocess (``"local"``), or runs it
in this process (``"debug"``, for a debugger); each job has its own log files, named by its job id.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bayes_halo
from bayes_halo.errors import BayesHaloError

Rows = list[dict[str, Any]]

#: seconds between two looks at the running jobs (SLURM's accounting is asked at most this often)
POLL_S = {"slurm": 30.0, "local": 1.0, "debug": 0.0}


@dataclass(frozen=True)
class Finished:
    """One finished run: its rows, or why it has none (``crashed``: the job itself died)."""

    job: Any  # run.Job
    rows: Rows | None
    error: str | None = None
    crashed: bool = False


@dataclass(frozen=True)
class SubmititOptions:
    """What every submitted job asks for."""

    cluster: str  # submitit's AutoExecutor cluster: "slurm", "local" or "debug"
    folder: Path  # submitit's files of every job, named by job id (submitted function, logs, result)
    partition: str | None
    gpus: int
    cpus: int  # also the run's torch threads
    timeout_min: int
    max_jobs: int | None  # jobs submitted and not yet finished, at most (None: all at once)


def pool(todo: list[Any], run_one: Callable[[Any], Rows], workers: int) -> Iterator[Finished]:
    """Runs in ``workers`` local processes (``run_one(job)`` -> rows); other errors stop the study."""
    with ProcessPoolExecutor(workers) as executor:
        futures = {executor.submit(run_one, job): job for job in todo}
        for future in as_completed(futures):
            try:
                yield Finished(futures[future], future.result())
            except BayesHaloError as err:
                yield Finished(futures[future], None, str(err))


def _run_in_job(paths: list[str], cwd: str, run_id: str, method: str, settings: dict[str, Any],
                threads: int) -> Rows | str:
    """Body of one submitit job: the study's runner and package as the driver found them, one run.

    Sent by value (see :func:`submitted`) and importing everything inside, after putting
    ``paths`` first on ``sys.path``, so the job needs neither the driver's script pickled nor
    the study folder on its own path.  A ``BayesHaloError`` comes back as its message.
    """
    sys.path[:0] = paths
    os.chdir(cwd)
    import run  # the study's runner, from paths[0]
    from bayes_halo import errors  # the package run imported, from paths[1]

    try:
        return run.run_job(run.Job(run_id, method, settings), threads)
    except errors.BayesHaloError as err:
        return str(err)


def executor(options: SubmititOptions, name: str) -> Any:
    """submitit's executor for the jobs, asking for what the options say (RuntimeError: no such cluster here)."""
    import submitit

    made = submitit.AutoExecutor(folder=options.folder, cluster=options.cluster)
    made.update_parameters(timeout_min=options.timeout_min, cpus_per_task=options.cpus, gpus_per_node=options.gpus,
                           name=name, **({"slurm_partition": options.partition} if options.partition else {}))
    return made


def submitted(todo: list[Any], executor: Any, options: SubmititOptions) -> Iterator[Finished]:
    """Runs as jobs of the submitit ``executor``, at most ``options.max_jobs`` at a time.

    Jobs still queued or running when this stops (e.g. Ctrl-C) are cancelled.  A job that
    dies (crash, time limit, cancellation, node failure) is yielded ``crashed`` with its log's
    path: rerunning the study resubmits it.  SLURM requeues a preempted job by itself.
    """
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # _run_in_job travels by value
    paths = [str(Path(__file__).resolve().parent), str(Path(bayes_halo.__file__).resolve().parents[1])]
    waiting, running = list(todo), []
    limit = options.max_jobs or len(todo)
    try:
        while waiting or running:
            while waiting and len(running) < limit:
                job = waiting.pop(0)
                handle = executor.submit(_run_in_job, paths, os.getcwd(), job.run_id, job.method, job.settings,
                                         options.cpus)
                print(f"submitted {job.run_id} as job {handle.job_id}", flush=True)
                running.append((handle, job))
            done = [(handle, job) for handle, job in running if handle.done()]
            for handle, job in done:
                running.remove((handle, job))
                yield _outcome(handle, job)
            if not done:
                time.sleep(POLL_S[options.cluster])
    finally:
        for handle, _ in running:
            handle.cancel(check=False)


def _outcome(handle: Any, job: Any) -> Finished:
    """A finished submitit job's rows, its BayesHaloError, or (crashed) the last line of its failure."""
    try:
        result = handle.result()
    except Exception as err:  # submitit's FailedJobError / UncompletedJobError: the job itself died
        return Finished(job, None, f"job {handle.job_id} died ({_reason(err)}); log: {handle.paths.stderr}",
                        crashed=True)
    if isinstance(result, str):
        return Finished(job, None, result)
    return Finished(job, result)


def _reason(err: Exception) -> str:
    """The last line of a crashed job's traceback, or the first words of submitit's "no result" error."""
    rule = "-" * 22  # submitit's FailedJobError quotes the job's traceback between two such rules
    lines = [line.strip() for line in str(err).splitlines()]
    if rule in lines:
        trace = lines[lines.index(rule) + 1:]
        trace = [line for line in trace[:trace.index(rule)] if line] if rule in trace else trace
        if trace:
            return trace[-1]
    return " ".join(lines[:2]) or type(err).__name__  # e.g. "Job 7 ... has not produced any output (state: TIMEOUT)"
