"""The OpenMP set-up of the command-line entry points, chosen before torch loads.

OpenMP worker threads that spin while they wait for work make small steps fast on idle cores,
and collapse when other processes need those cores: a spinning thread takes the core from the
thread that would finish the step.  ``python -m bayes_halo.fit`` (and ``path``, ``export``)
therefore choose the wait policy at start, unless the user set ``GOMP_SPINCOUNT`` or
``OMP_WAIT_POLICY`` themselves:

* other processes already running on at least half of the cores (the kernel's count of runnable
  tasks, sampled for 50 ms): ``OMP_WAIT_POLICY=PASSIVE``, idle threads sleep at once;
* otherwise a bounded spin, ``GOMP_SPINCOUNT`` (libgomp, what torch's CPU wheels use): idle
  threads spin briefly and then sleep, so a load that starts later costs little.

The wait policy changes timing only, never a result.  ``OMP_NUM_THREADS`` and ``--threads``
choose the thread count as usual.

The variable must be set before libgomp loads (it reads its environment once), so this module
imports nothing heavy and :mod:`bayes_halo` calls :func:`entry_point_threading` first thing.  A
program that imports bayes_halo as a library is left alone.  The value was chosen with
``benchmarks/under_load.py``.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence

#: modules whose ``python -m`` run gets the bounded spin
ENTRY_POINTS = ("bayes_halo.fit", "bayes_halo.path", "bayes_halo.export")
#: busy-wait iterations of an idle OpenMP thread before it sleeps (libgomp's own default: 300,000)
SPINCOUNT = "10000"
#: what ``--help`` of every entry point says about threads
THREADING_HELP = f"""\
threads: before torch loads, this command sets OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads
sleep at once) when other processes already run on half the cores or more, else
GOMP_SPINCOUNT={SPINCOUNT} (they spin briefly, then sleep): fast on idle cores, no collapse when
other processes use them.  Override it in the environment: GOMP_SPINCOUNT=N, or
OMP_WAIT_POLICY=ACTIVE (spin; fastest on cores of your own) or PASSIVE; the thread count with
OMP_NUM_THREADS or, for fit and path, --threads."""

#: variables with which a user chooses the wait policy themselves
USER_CHOICES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def is_entry_point(argv: Sequence[str]) -> bool:
    """Whether the interpreter's command line ``argv`` (``sys.orig_argv``) runs one of :data:`ENTRY_POINTS`."""
    return any(flag == "-m" and module in ENTRY_POINTS for flag, module in zip(argv, argv[1:]))


def busy_cores(samples: int = 6, interval: float = 0.01) -> float:
    """Other runnable tasks on this machine right now: the mean over ``samples`` reads of the kernel's
    running-task count (``/proc/loadavg``, this process excluded); the 1-minute load average where
    there is no ``/proc``."""
    try:
        counts = []
        for _ in range(samples):
            with open("/proc/loadavg") as handle:
                counts.append(int(handle.read().split()[3].split("/")[0]) - 1)
            time.sleep(interval)
        return sum(counts) / len(counts)
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def entry_point_threading(argv: Sequence[str] | None = None, environ: MutableMapping[str, str] | None = None,
                          modules: Mapping[str, object] | None = None,
                          busy: Callable[[], float] = busy_cores, cores: int | None = None) -> str | None:
    """For an entry point, when torch is not loaded yet and the user chose no wait policy: set
    ``OMP_WAIT_POLICY=PASSIVE`` if ``busy()`` other tasks occupy at least half of the ``cores``, else
    ``GOMP_SPINCOUNT`` to :data:`SPINCOUNT`.  Returns the variable set, or None."""
    argv = sys.orig_argv if argv is None else argv
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "torch" in modules or not is_entry_point(argv) or any(name in environ for name in USER_CHOICES):
        return None
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if busy() >= cores / 2:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return "OMP_WAIT_POLICY"
    environ["GOMP_SPINCOUNT"] = SPINCOUNT
    return "GOMP_SPINCOUNT"
