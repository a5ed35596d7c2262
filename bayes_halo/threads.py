"""The OpenMP set-up of the command-line entry points, chosen before torch loads.

OpenMP worker threads that spin while they wait for work make small steps fast on idle cores,
and collapse when other processes need those cores: a spinning thread takes the core from the
thread that would finish the step.  ``python -m bayes_halo.fit`` (and ``path``, ``export``)
therefore bound the spin with ``GOMP_SPINCOUNT`` (libgomp, what torch's CPU wheels use), unless
the user set ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` themselves; threads then spin briefly and
sleep after that.  ``OMP_NUM_THREADS`` and ``--threads`` choose the thread count as usual.

The variable must be set before libgomp loads (it reads its environment once), so this module
imports nothing heavy and :mod:`bayes_halo` calls :func:`entry_point_threading` first thing.  A
program that imports bayes_halo as a library is left alone.  The value was chosen with
``benchmarks/under_load.py``.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence

#: modules whose ``python -m`` run gets the bounded spin
ENTRY_POINTS = ("bayes_halo.fit", "bayes_halo.path", "bayes_halo.export")
#: busy-wait iterations of an idle OpenMP thread before it sleeps (libgomp's own default: 300,000)
SPINCOUNT = "10000"
#: what ``--help`` of every entry point says about threads
THREADING_HELP = f"""\
threads: this command sets GOMP_SPINCOUNT={SPINCOUNT} before torch loads (idle OpenMP threads spin
briefly, then sleep), which stays fast on idle cores and does not collapse when other processes
use them.  Override it in the environment: GOMP_SPINCOUNT=N, or OMP_WAIT_POLICY=ACTIVE (spin,
fastest on cores of your own) or PASSIVE (sleep at once); the thread count with OMP_NUM_THREADS
or, for fit and path, --threads."""

#: variables with which a user chooses the wait policy themselves
USER_CHOICES = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def is_entry_point(argv: Sequence[str]) -> bool:
    """Whether the interpreter's command line ``argv`` (``sys.orig_argv``) runs one of :data:`ENTRY_POINTS`."""
    return any(flag == "-m" and module in ENTRY_POINTS for flag, module in zip(argv, argv[1:]))


def entry_point_threading(argv: Sequence[str] | None = None, environ: MutableMapping[str, str] | None = None,
                          modules: Mapping[str, object] | None = None) -> bool:
    """Set ``GOMP_SPINCOUNT`` to :data:`SPINCOUNT` for an entry point, if torch is not loaded yet and the
    user chose no wait policy; returns whether it did."""
    argv = sys.orig_argv if argv is None else argv
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "torch" in modules or not is_entry_point(argv) or any(name in environ for name in USER_CHOICES):
        return False
    environ["GOMP_SPINCOUNT"] = SPINCOUNT
    return True
