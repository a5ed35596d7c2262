"""Wall time of a command under several threading set-ups, on quiet cores and beside a synthetic load.

Each set-up (environment variables for the child process) runs the command twice per round: once
alone, once while ``--load-procs`` busy processes (a pure-Python loop each, default: one per core)
keep the cores busy.  Rounds interleave the set-ups, so a machine whose background load drifts
affects them alike.  The table gives the median wall time per set-up and condition, the loaded /
quiet ratio (the goal: at most 2.5) and each set-up's time relative to the first one; when the
command leaves a ``metrics.json`` in ``{out}`` (``bayes_halo.fit`` does), a second table gives its
``train_seconds`` (training alone, without start-up and evaluation) the same way.

    PYTHONPATH=. python benchmarks/under_load.py                       # a short default-style fit
    PYTHONPATH=. python benchmarks/under_load.py --rounds 3 -- python -m bayes_halo.fit --prior halo \\
        --out {out} --no-progress                                        # the full default command

The command is run as given (``{out}`` in it is replaced by a fresh temporary folder per run).
A set-up ``NAME=VAR=VALUE,VAR=VALUE`` (``--setup``) replaces the built-in list; ``entry-default``
is the command's own default (for ``python -m bayes_halo.*``: the bounded spin the entry points
set).  The load average before each run is recorded: "quiet" means no synthetic load, not an idle
machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

#: the built-in set-ups: name -> environment variables (empty: the entry point's own policy)
SETUPS: dict[str, dict[str, str]] = {
    "entry-default": {},
    "openmp-default": {"GOMP_SPINCOUNT": "300000"},  # libgomp's own default spin (no OMP_WAIT_POLICY)
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one-thread": {"OMP_NUM_THREADS": "1"},
}
DEFAULT_COMMAND = [sys.executable, "-m", "bayes_halo.fit", "--epochs", "2", "--keep", "0.1", "--no-progress",
                   "--out", "{out}"]
#: variables a set-up controls: removed from the child's environment unless the set-up gives them
CONTROLLED = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def parse_setup(text: str) -> tuple[str, dict[str, str]]:
    """``"spin10k=GOMP_SPINCOUNT=10000"`` -> ``("spin10k", {"GOMP_SPINCOUNT": "10000"})``."""
    name, _, assignments = text.partition("=")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    return name, env


def start_load(processes: int) -> list[subprocess.Popen]:
    """``processes`` busy loops (one core each)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]


def stop_load(load: Sequence[subprocess.Popen]) -> None:
    """End the busy loops this script started."""
    for process in load:
        process.kill()
    for process in load:
        process.wait()


def run_once(command: Sequence[str], env: dict[str, str], timeout: float) -> tuple[float, float | None]:
    """Wall seconds of one run of ``command`` with ``env`` and its metrics.json's ``train_seconds`` if it
    wrote one (stops the script if the command fails)."""
    child = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    child.update(env)
    with tempfile.TemporaryDirectory() as tmp:
        argv = [part.replace("{out}", str(Path(tmp) / "out")) for part in command]
        start = time.perf_counter()
        try:
            done = subprocess.run(argv, env=child, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return math.inf, None  # abandoned: shown as "inf" (longer than --timeout)
        seconds = time.perf_counter() - start
        metrics = Path(tmp) / "out" / "metrics.json"
        train = json.loads(metrics.read_text())["train_seconds"] if metrics.is_file() else None
    if done.returncode != 0:
        raise SystemExit(f"under_load.py: error: {shlex.join(argv)} failed ({done.returncode}): "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    return seconds, train


def measure(command: Sequence[str], setups: dict[str, dict[str, str]], rounds: int, load_procs: int,
            timeout: float) -> dict[str, dict[tuple[str, str], list[float]]]:
    """``{"wall" | "train": {(setup, "quiet" | "loaded"): [seconds per round]}}``."""
    times: dict[str, dict[tuple[str, str], list[float]]] = {"wall": {}, "train": {}}
    for index in range(rounds):
        for name, env in setups.items():
            for condition in ("quiet", "loaded"):
                load = start_load(load_procs) if condition == "loaded" else []
                try:
                    time.sleep(0.5 if load else 0)  # the load processes are running before the command starts
                    before = os.getloadavg()[0]
                    seconds, train = run_once(command, env, timeout)
                finally:
                    stop_load(load)
                times["wall"].setdefault((name, condition), []).append(seconds)
                if train is not None or math.isinf(seconds):  # an abandoned run: inf in both tables
                    times["train"].setdefault((name, condition), []).append(seconds if train is None else train)
                print(f"round {index + 1} {name:<16} {condition:<6} wall {seconds:7.1f} s"
                      + (f", training {train:7.1f} s" if train is not None else "")
                      + f" (load average before: {before:.1f})", flush=True)
    return times


def table(times: dict[tuple[str, str], list[float]], setups: Sequence[str]) -> str:
    """Median wall time per set-up and condition, loaded / quiet, and each relative to the first set-up."""
    med = {key: statistics.median(values) for key, values in times.items()}
    first = setups[0]
    lines = [f"{'set-up':<16} {'quiet s':>8} {'loaded s':>9} {'loaded/quiet':>13} "
             f"{'quiet/' + first:>{len(first) + 7}} {'loaded/' + first:>{len(first) + 8}}"]
    for name in setups:
        quiet, loaded = med[(name, "quiet")], med[(name, "loaded")]
        lines.append(f"{name:<16} {quiet:8.1f} {loaded:9.1f} {loaded / quiet:13.2f} "
                     f"{quiet / med[(first, 'quiet')]:>{len(first) + 7}.2f} "
                     f"{loaded / med[(first, 'loaded')]:>{len(first) + 8}.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print the table (also to ``--table``)."""
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="rounds over all set-ups (default: 1)")
    parser.add_argument("--load-procs", type=int, default=os.cpu_count() or 2,
                        help="busy processes of the synthetic load (default: one per core)")
    parser.add_argument("--setup", action="append", metavar="NAME=VAR=VALUE,...",
                        help="a threading set-up (repeatable; replaces the built-in list: "
                             + ", ".join(SETUPS) + ")")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds before one run is abandoned (its time shows as inf)")
    parser.add_argument("--table", type=Path, help="also write the table to this file")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the command after -- (default: a 3-epoch default-style fit)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    setups = dict(parse_setup(s) for s in args.setup) if args.setup else SETUPS
    times = measure(command or DEFAULT_COMMAND, setups, args.rounds, args.load_procs, args.timeout)
    text = (f"command: {shlex.join(command or DEFAULT_COMMAND)}\n{os.cpu_count()} cores, {args.rounds} round(s), "
            f"load: {args.load_procs} busy process(es)\n\nmedian wall seconds\n{table(times['wall'], list(setups))}")
    if times["train"]:
        text += f"\n\nmedian training seconds (metrics.json train_seconds)\n{table(times['train'], list(setups))}"
    print(text)
    if args.table:
        args.table.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
