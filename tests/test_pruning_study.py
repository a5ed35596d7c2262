"""The pruning-study runner and report (experiments/pruning_study) on the 8x8 digits.

The table is checked against an independent pandas summary of results.csv, and the runner's
resume logic by running it again (nothing reruns) and after editing one grid value (only that
point's runs rerun).  Runs handed to submitit jobs (local subprocesses) must give the local
pool's rows, number for number, and resume the same way.
"""
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).parents[1]
STUDY_DIR = REPO / "experiments" / "pruning_study"
RUN = STUDY_DIR / "run.py"


@pytest.fixture(scope="module")
def report():
    sys.path.insert(0, str(STUDY_DIR))
    try:
        yield importlib.import_module("report")
    finally:
        sys.path.remove(str(STUDY_DIR))


def tiny_study(lasso_grid):
    return {
        "study": "tiny", "model": "lenet300", "dataset": "digits", "epochs": 3, "seeds": [0, 1],
        "keep": [0.2, 0.05], "focus": "halo", "common": {"val_size": 200},
        "methods": {
            "dense": {"prior": "none"},
            "dense+finetune": {"prior": "none", "finetune_epochs": 1, "grid": {"finetune_lr": [0.05]},
                               "criteria": ["magnitude+finetune"]},
            "lasso": {"prior": "laplace", "grid": {"xi": lasso_grid}},
            "halo": {"prior": "halo", "grid": {"xi": [1e-5], "psi": [1e-4, 1e-3]},
                     "criteria": ["magnitude", "halo-coefficient"]},
        },
    }


def run_study(config: Path, out: Path, *flags: str, workers: int = 1) -> str:
    """The runner's log; it imports this checkout's bayes_halo (the script's folder is its sys.path[0])."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(RUN), str(config), "--workers", str(workers), "--out", str(out),
                           *flags], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def expected_table(rows: pd.DataFrame) -> dict[tuple[str, str, float], tuple[float, float]]:
    """(method, criterion, keep) -> (mean, sd) test error (%) of the best mean-validation point."""
    rows = rows.assign(error=100 * (1 - rows["test_accuracy"]))
    points = rows.fillna({"xi": -1, "psi": -1, "finetune_lr": -1})
    stats = points.groupby(["method", "criterion", "keep", "xi", "psi", "finetune_lr"]).agg(
        val=("val_accuracy", "mean"), mean=("error", "mean"), sd=("error", "std")).reset_index()
    best = stats.loc[stats.groupby(["method", "criterion", "keep"])["val"].idxmax()]
    return {(r.method, r.criterion, r.keep): (r.mean, r.sd) for r in best.itertuples()}


def table_cells(text: str) -> dict[str, list[tuple[float, float]]]:
    """Rows of table.md's first table: label -> [(mean, sd) per keep]."""
    first = text.split("## Chosen strengths")[0]
    cells = {}
    for line in first.splitlines():
        if line.startswith("| ") and "±" in line:
            label, *values = [part.strip() for part in line.strip("|").split("|")]
            cells[label] = [tuple(map(float, re.match(r"([\d.]+) ± ([\d.]+)", v).groups())) for v in values]
    return cells


@pytest.mark.slow
def test_runner_table_and_resume(tmp_path):
    config, out = tmp_path / "tiny.json", tmp_path / "out"
    config.write_text(json.dumps(tiny_study([1e-4, 1e-3])))
    log = run_study(config, out)
    assert "tiny: 12 runs, 0 already" in log

    rows = pd.read_csv(out / "results.csv")
    # 2 seeds x (dense 1 + fine-tuned 1 + lasso 2 + HALO 2) runs; rows per run: keeps x criteria
    per_run = rows.groupby("run_id").size()
    assert len(per_run) == 12
    assert per_run[[i for i in per_run.index if i.startswith("halo")]].eq(4).all()
    assert per_run[[i for i in per_run.index if i.startswith("dense+finetune")]].eq(4).all()  # magnitude and +finetune
    assert (rows["budget_epochs"] == 3).all()  # the fine-tuned baseline spends the same budget
    assert (rows.loc[rows["method"] == "dense+finetune", "epochs"] == 2).all()

    expected = expected_table(rows)
    cells = table_cells((out / "table.md").read_text())
    labels = {("dense", "magnitude"): "dense", ("dense+finetune", "magnitude+finetune"): "dense+finetune",
              ("lasso", "magnitude"): "lasso", ("halo", "magnitude"): "halo",
              ("halo", "halo-coefficient"): "halo, halo-coefficient criterion"}
    for (method, criterion), label in labels.items():
        for keep, (mean, sd) in zip([0.2, 0.05], cells[label]):
            want_mean, want_sd = expected[(method, criterion, keep)]
            assert mean == pytest.approx(want_mean, abs=0.006), (label, keep)
            assert sd == pytest.approx(want_sd, abs=0.006), (label, keep)
    assert (out / "accuracy_vs_keep.png").stat().st_size > 0

    before = (out / "results.csv").read_text()
    assert "12 runs, 12 already" in run_study(config, out)
    assert (out / "results.csv").read_text() == before

    config.write_text(json.dumps(tiny_study([1e-4, 3e-3])))  # one lasso point changed
    assert "12 runs, 10 already in" in run_study(config, out)
    rows = pd.read_csv(out / "results.csv")
    assert sorted(rows.loc[rows["method"] == "lasso", "xi"].unique()) == [1e-4, 3e-3]


def jobs_study():
    """Three tiny runs (fine-tuned baseline, lasso, HALO) and one that diverges: four jobs."""
    methods = tiny_study([1e-4])["methods"]
    return {**tiny_study([1e-4]), "seeds": [0], "methods": {
        "dense+finetune": methods["dense+finetune"], "lasso": methods["lasso"],
        "halo": {**methods["halo"], "grid": {"xi": [1e-5], "psi": [1e-3]}},
        "diverged": {"prior": "none", "grid": {"lr": [1e9]}}}}


@pytest.mark.slow
def test_submitit_jobs_give_the_pool_rows_and_resume(tmp_path):
    pytest.importorskip("submitit", reason="--executor submitit needs submitit (in the test extra)")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(jobs_study()))
    submitit = ["--executor", "submitit", "--cluster", "local"]
    pool_log = run_study(config, tmp_path / "pool")
    jobs_log = run_study(config, tmp_path / "jobs", *submitit, workers=2)
    assert "tiny: 4 runs, 0 already" in jobs_log
    assert jobs_log.count("submitted ") == 4
    for log in (pool_log, jobs_log):  # a BayesHaloError is reported and not recorded, whichever executor
        assert re.search(r"diverged lr=1e\+09 seed=0: FAILED, not recorded: training diverged", log)

    def rows(out):
        table = pd.read_csv(out / "results.csv").drop(columns=["train_seconds", "run_seconds"])
        return table.sort_values(["run_id", "criterion", "keep"]).reset_index(drop=True)
    pool, jobs = rows(tmp_path / "pool"), rows(tmp_path / "jobs")
    assert sorted(pool["run_id"].unique()) == ["dense+finetune finetune_lr=0.05 seed=0",
                                               "halo xi=1e-05 psi=0.001 seed=0", "lasso xi=0.0001 seed=0"]
    pd.testing.assert_frame_equal(jobs, pool, check_exact=True)  # single-thread runs: the same numbers
    assert len(list((tmp_path / "jobs" / "jobs").glob("*_log.err"))) == 4  # each job its own log
    assert (tmp_path / "jobs" / "table.md").read_text() == (tmp_path / "pool" / "table.md").read_text()

    before = (tmp_path / "jobs" / "results.csv").read_text()
    again = run_study(config, tmp_path / "jobs", *submitit, workers=2)
    assert "tiny: 4 runs, 3 already in" in again  # only the diverged run, never recorded, is tried again
    assert again.count("submitted ") == 1 and "submitted diverged lr=1e+09 seed=0" in again
    assert (tmp_path / "jobs" / "results.csv").read_text() == before


@pytest.mark.slow
def test_a_job_that_dies_is_reported_with_its_log(tmp_path):
    pytest.importorskip("submitit", reason="--executor submitit needs submitit (in the test extra)")
    sys.path.insert(0, str(STUDY_DIR))
    try:
        runner, executors = importlib.import_module("run"), importlib.import_module("executors")
    finally:
        sys.path.remove(str(STUDY_DIR))
    options = executors.SubmititOptions(cluster="local", folder=tmp_path, partition=None, gpus=0, cpus=1,
                                        timeout_min=5, max_jobs=None)
    broken = runner.Job("broken", "dense", None)  # no settings: a TypeError in the job, not a BayesHaloError
    [finished] = executors.submitted([broken], executors.executor(options, name="tiny"), options)
    assert finished.job is broken and finished.rows is None and finished.crashed
    log = Path(finished.error.rsplit("log: ", 1)[1])
    assert "TypeError" in finished.error and "TypeError" in log.read_text()


def test_choice_needs_every_seed(report):
    """A grid point missing a seed never competes, however good its validation accuracy."""
    def row(xi, seed, val, test):
        return {"method": "lasso", "criterion": "magnitude", "keep": "0.1", "xi": str(xi), "psi": "",
                "finetune_lr": "", "seed": str(seed), "val_accuracy": str(val), "test_accuracy": str(test)}
    rows = [row(1e-4, 0, 0.90, 0.91), row(1e-4, 1, 0.92, 0.89), row(1e-3, 0, 0.99, 0.99)]
    cell = report.choose(rows, "lasso", "magnitude", 0.1, n_seeds=2)
    assert cell.point == {"xi": "0.0001"}
    assert cell.val == pytest.approx(0.91)
    assert cell.mean == pytest.approx(10.0) and cell.sd == pytest.approx(2 ** 0.5)
    assert report.choose(rows[2:], "lasso", "magnitude", 0.1, n_seeds=2) is None


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "lenet5-caffe"])
def test_committed_studies_resume_every_committed_row(name):
    """Each committed study's settings digest to the config_sha of its committed rows: a rerun trains nothing."""
    sys.path.insert(0, str(STUDY_DIR))
    try:
        runner = importlib.import_module("run")
        study = runner.load_study(STUDY_DIR / "configs" / f"{name}.json")
        jobs = runner.build_jobs(study)
        rows = runner.read_rows(STUDY_DIR.parent / "results" / study["study"] / "results.csv")
    finally:
        sys.path.remove(str(STUDY_DIR))
    committed = {r["run_id"]: r["config_sha"] for r in rows}
    assert {job.run_id: job.sha for job in jobs} == committed


@pytest.mark.parametrize("name", ["cifar10-vgg16", "cifar100-vgg16", "cifar100-resnet50"])
def test_cifar_study_configs_run_their_first_halo_point(name, tmp_path):
    """Every run's settings are valid, and HALO's first grid point trains, prunes and scores on a fake CIFAR."""
    from fake_cifar import write_cifar10, write_cifar100

    sys.path.insert(0, str(STUDY_DIR))
    try:
        runner = importlib.import_module("run")
        study = runner.load_study(STUDY_DIR / "configs" / f"{name}.json")
        jobs = runner.build_jobs(study)  # validates the settings of every run
        (write_cifar10 if study["dataset"] == "cifar10" else write_cifar100)(tmp_path)
        first = next(job for job in jobs if job.method == "halo")
        quick = runner.Job(first.run_id, first.method, {**first.settings, "epochs": 1, "subset": 120, "val_size": 20,
                                                        "batch_size": 50, "data_dir": str(tmp_path), "device": "cpu"})
        rows = runner.run_job(quick)
    finally:
        sys.path.remove(str(STUDY_DIR))
    assert len(jobs) == 3 * sum(len(runner.grid_points(spec)) for spec in study["methods"].values())
    assert {r["keep"] for r in rows} == set(study["keep"]) and {r["criterion"] for r in rows} == {"magnitude", "halo-coefficient"}
    assert all(r["total_weights"] == rows[0]["total_weights"] for r in rows)
