"""The entry points' OpenMP set-up and the progress bar's warm-up (no training)."""
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bayes_halo.threads import SPINCOUNT, busy_cores, entry_point_threading, is_entry_point
from bayes_halo.training.progress import Progress


@pytest.mark.parametrize("argv, expected", [
    (["python", "-m", "bayes_halo.fit", "--prior", "halo"], True),
    (["python3", "-u", "-m", "bayes_halo.export", "run", "--keep", "0.1"], True),
    (["python", "-m", "bayes_halo.path"], True),
    (["python", "-m", "pytest", "-m", "slow"], False),
    (["python", "script.py", "bayes_halo.fit"], False),
])
def test_entry_points_are_recognised(argv, expected):
    assert is_entry_point(argv) is expected


FIT = ["python", "-m", "bayes_halo.fit"]


@pytest.mark.parametrize("environ, modules, argv, busy, expected", [
    ({}, {}, FIT, 0.0, {"GOMP_SPINCOUNT": SPINCOUNT}),  # idle cores: a bounded spin
    ({}, {}, FIT, 0.9, {"GOMP_SPINCOUNT": SPINCOUNT}),  # under half of the 2 cores busy
    ({}, {}, FIT, 1.0, {"OMP_WAIT_POLICY": "PASSIVE"}),  # half of them busy already: sleep at once
    ({"OMP_WAIT_POLICY": "ACTIVE"}, {}, FIT, 5.0, {"OMP_WAIT_POLICY": "ACTIVE"}),
    ({"GOMP_SPINCOUNT": "5"}, {}, FIT, 5.0, {"GOMP_SPINCOUNT": "5"}),
    ({}, {"torch": object()}, FIT, 0.0, {}),  # too late: libgomp has read its environment
    ({}, {}, ["python", "my_script.py"], 0.0, {}),  # a library user's program is left alone
])
def test_the_user_s_choice_wins_then_the_load_decides(environ, modules, argv, busy, expected):
    entry_point_threading(argv, environ, modules, busy=lambda: busy, cores=2)
    assert environ == expected


def test_busy_cores_counts_other_runnable_tasks():
    """While two busy loops of ours run, the count of other runnable tasks is at least about 2."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)
        assert busy_cores(samples=20, interval=0.01) >= 1.5
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def test_set_before_torch_loads_in_a_real_interpreter():
    """What libgomp sees at load: the wait policy is in the environment before ``import torch`` runs."""
    code = ("import sys; sys.orig_argv[:] = ['python', '-m', 'bayes_halo.fit']; import bayes_halo, os; "
            "print(os.environ.get('GOMP_SPINCOUNT') or os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split()[0] in (SPINCOUNT, "PASSIVE") and done.stdout.split()[1] == "True"


def test_progress_estimates_from_the_steps_after_the_warm_up():
    """A 100 s first step (a compile) does not enter the rate: 10 steps of 0.5 s after the warm-up give 2 steps/s."""
    clock = [0.0]
    bar = Progress(total=100, file=io.StringIO(), warmup=5, mininterval=0)
    bar._time = lambda: clock[0]
    bar.start_t = 0.0
    clock[0] = 100.0
    bar.update(1)
    assert "estimating" in str(bar) and "<" not in str(bar)
    for _ in range(4):
        clock[0] += 1.0
        bar.update(1)
    str(bar)  # the first display after the warm-up starts the clock of the estimate
    for _ in range(10):
        clock[0] += 0.5
        bar.update(1)
    assert bar.format_dict["rate"] == pytest.approx(2.0)
    assert "<00:42" in str(bar)  # 85 steps left at 2 steps/s
    bar.close()


def test_under_load_benchmark_runs_each_setup_quiet_and_loaded(tmp_path, capsys):
    """benchmarks/under_load.py on a trivial command: every set-up's environment reaches the child, both
    conditions run, and the first set-up's ratios to itself are 1."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        import under_load
    finally:
        sys.path.pop(0)
    check = "import os, sys; sys.exit(os.environ['X'] not in ('1', '2') or 'OMP_WAIT_POLICY' in os.environ)"
    table = tmp_path / "table.txt"
    assert under_load.main(["--load-procs", "1", "--setup", "a=X=1", "--setup", "b=X=2,GOMP_SPINCOUNT=5",
                            "--table", str(table), "--", sys.executable, "-c", check]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in table.read_text().splitlines() if line[:2] in ("a ", "b ")}
    assert set(rows) == {"a", "b"}
    assert rows["a"][3:5] == ["1.00", "1.00"] and len(rows["b"]) == 5
