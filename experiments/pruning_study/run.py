"""Run a pruning study: methods x strength grid x seeds on MNIST, then write its report.

Every run trains with the study's epoch budget (the adaptive lasso's pilot epochs and the
dense baseline's fine-tuning epochs come out of that budget), prunes the END-of-training
network one-shot by global magnitude at every keep fraction, and records validation and test
accuracy.  Rows go to ``<out>/results.csv`` (rewritten atomically after every finished run);
a run whose rows are already there, with the same settings, is skipped, so an interrupted
study continues where it stopped.  Afterwards ``report.py`` picks, per method and keep
fraction, the grid point with the best MEAN VALIDATION accuracy across seeds and writes
``table.md`` and ``accuracy_vs_keep.png``.

Runs execute in a local process pool (the default), or as submitit jobs: on a SLURM cluster
(``--cluster slurm``) or as local subprocesses (``--cluster local``); either way this process
records each run's rows as its job finishes, so it must keep running until the study is done.

    python experiments/pruning_study/run.py experiments/pruning_study/configs/lenet300.json --workers 2
    python experiments/pruning_study/run.py CONFIG --executor submitit --cluster slurm \\
        --slurm-partition gpu --gpus-per-run 1 --timeout-min 600
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import io
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

from bayes_halo.atomic import write_text
from bayes_halo.data import ArrayData, load_dataset
from bayes_halo.errors import BayesHaloError, MissingDependencyError
from bayes_halo.extras import require
from bayes_halo.config.priors import needs_pilot
from bayes_halo.config.sections import DataConfig, RunConfig, resolved_prior
from bayes_halo.pipeline import pilot_epochs_used, run_fit

import executors
import report

FIELDS = ["run_id", "config_sha", "method", "prior", "xi", "psi", "finetune_lr", "seed", "epochs",
          "pilot_epochs", "finetune_epochs", "budget_epochs", "keep", "criterion", "kept_weights",
          "total_weights", "val_accuracy", "test_accuracy", "dense_val_accuracy", "dense_test_accuracy",
          "near_zero", "train_seconds", "run_seconds"]


@dataclass(frozen=True)
class Job:
    """One training run of the study: the flat run settings the study sets (the rest are defaults)."""

    run_id: str
    method: str
    settings: dict[str, Any]

    @property
    def config(self) -> RunConfig:
        return RunConfig.from_flat(**self.settings, threads=1, download=False)

    @property
    def sha(self) -> str:
        """Digest of the study's settings of this run, so an edited config never reuses stale rows."""
        return hashlib.sha1(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:12]


def load_study(path: Path) -> dict[str, Any]:
    """The study's JSON config (see ``configs/``)."""
    study = json.loads(path.read_text())
    for key in ("study", "model", "epochs", "seeds", "keep", "methods"):
        if key not in study:
            raise SystemExit(f"run.py: error: {path} lacks {key!r}")
    return study


def grid_points(spec: dict[str, Any]) -> list[dict[str, float]]:
    """Every combination of a method's ``grid`` axes (one empty point without a grid)."""
    axes = spec.get("grid", {})
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def method_settings(study: dict[str, Any], spec: dict[str, Any], point: dict[str, float], seed: int) -> dict[str, Any]:
    """Flat run settings of one run, with the budget split: pilot or fine-tuning epochs come out of it."""
    fixed = {k: v for k, v in spec.items() if k not in ("grid", "criteria", "label")}
    settings = {**study.get("common", {}), **fixed, **point}
    pilot = needs_pilot(resolved_prior(settings["prior"], settings.get("groups", "weight")))
    reserved = settings.get("pilot_epochs", 0) if pilot else 0
    reserved += settings.get("finetune_epochs", 0)
    if reserved >= study["epochs"]:
        raise SystemExit(f"run.py: error: pilot/fine-tuning epochs {reserved} leave no training in a "
                         f"{study['epochs']}-epoch budget")
    settings = {"model": study["model"], "dataset": study.get("dataset", "mnist"), "epochs": study["epochs"] - reserved,
                "keep": list(study["keep"]), "seed": seed, **settings}
    RunConfig.from_flat(**settings)  # a bad setting stops the study before any run starts
    return settings


def build_jobs(study: dict[str, Any]) -> list[Job]:
    """All runs, seed-major (a partial study holds whole seeds first)."""
    jobs = []
    for seed in study["seeds"]:
        for method, spec in study["methods"].items():
            for point in grid_points(spec):
                name = " ".join(f"{k}={v:g}" for k, v in point.items())
                jobs.append(Job(f"{method} {name} seed={seed}".replace("  ", " "), method,
                                method_settings(study, spec, point, seed)))
    return jobs


@functools.lru_cache(maxsize=None)
def _data(data: DataConfig, seed: int) -> ArrayData:
    """The data of one seed's validation split (``data_dir`` default: ./data), loaded once per worker process."""
    return load_dataset(data.dataset, data.data_dir, val_size=data.val_size, seed=seed, download=data.download,
                        subset=data.subset, augment=data.augment)


def run_job(job: Job, threads: int = 1) -> list[dict[str, Any]]:
    """Train, prune and evaluate one run on ``threads`` torch threads; returns its results.csv rows."""
    torch.set_num_threads(threads)
    config = job.config.replace(threads=threads)
    start = time.perf_counter()
    metrics = run_fit(config, progress=False, data=_data(config.data, config.seed)).metrics
    seconds = time.perf_counter() - start
    prune = config.prune
    budget = config.train.epochs + prune.finetune_epochs + pilot_epochs_used(config)
    common = {"run_id": job.run_id, "config_sha": job.sha, "method": job.method, "prior": config.prior.prior_name,
              "xi": config.prior.xi, "psi": config.prior.psi,
              "finetune_lr": prune.finetune_lr if prune.finetune_epochs else None,
              "seed": config.seed, "epochs": config.train.epochs, "pilot_epochs": pilot_epochs_used(config),
              "finetune_epochs": prune.finetune_epochs, "budget_epochs": budget,
              "dense_val_accuracy": metrics["dense"]["val_accuracy"],
              "dense_test_accuracy": metrics["dense"]["test_accuracy"],
              "near_zero": metrics["history"][-1]["near_zero"], "train_seconds": round(metrics["train_seconds"], 1),
              "run_seconds": round(seconds, 1)}
    return [{**common, **{k: row[k] for k in ("keep", "criterion", "kept_weights", "total_weights",
                                                "val_accuracy", "test_accuracy")}} for row in metrics["pruned"]]


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of an existing results.csv (none if absent)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite results.csv atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def run_study(study: dict[str, Any], jobs: list[Job], out: Path,
              dispatch: Callable[[list[Job]], Iterator[executors.Finished]]) -> int:
    """Run every job not yet in ``out/results.csv`` through ``dispatch``; returns how many jobs died.

    Each finished run's rows are added to results.csv at once (atomically); a run that failed
    (a ``BayesHaloError``, or a job that died) is reported and not recorded.
    """
    current = {job.run_id: job.sha for job in jobs}
    rows = [r for r in read_rows(out / "results.csv") if current.get(r["run_id"]) == r["config_sha"]]
    done = {r["run_id"] for r in rows}
    todo = [job for job in jobs if job.run_id not in done]
    print(f"{study['study']}: {len(jobs)} runs, {len(done)} already in {out / 'results.csv'}, {len(todo)} to go",
          flush=True)
    start, died = time.perf_counter(), 0
    with contextlib.closing(dispatch(todo)) as results:  # closed on any exit: no job outlives the runner
        for finished, result in enumerate(results, 1):
            job, new = result.job, result.rows
            if new is None:  # e.g. divergence: the point lacks this seed and is not chosen
                died += result.crashed
                print(f"[{finished}/{len(todo)}] {job.run_id}: FAILED, not recorded: {result.error}", flush=True)
                continue
            rows.extend(new)
            write_rows(out / "results.csv", rows)
            elapsed = time.perf_counter() - start
            shown = "magnitude+finetune" if new[0]["finetune_epochs"] else "magnitude"
            accs = " ".join(f"{100 * r['keep']:g}%:{100 * r['val_accuracy']:.2f}"
                            for r in new if r["criterion"] == shown)
            print(f"[{finished}/{len(todo)}] {job.run_id}: val {accs} | {new[0]['run_seconds']:.0f} s | "
                  f"elapsed {elapsed / 60:.1f} min, eta {elapsed / finished * (len(todo) - finished) / 60:.1f} min",
                  flush=True)
    print(f"{study['study']}: {len(todo)} runs in {(time.perf_counter() - start) / 60:.1f} min wall", flush=True)
    if died:
        print(f"{study['study']}: {died} job(s) died and are not recorded; rerun the same command to retry them",
              flush=True)
    return died


def usage_error(message: str) -> NoReturn:
    """Stop with a one-line error and exit status 2."""
    print(f"run.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def dispatcher(args: argparse.Namespace, study: dict[str, Any],
               out: Path) -> Callable[[list[Job]], Iterator[executors.Finished]]:
    """The executor the flags choose, as ``todo -> finished runs``."""
    if args.executor == "pool":
        return lambda todo: executors.pool(todo, run_job, args.workers or 2)
    options = executors.SubmititOptions(
        cluster=args.cluster, folder=(args.jobs_folder or out / "jobs").resolve(), partition=args.slurm_partition,
        gpus=args.gpus_per_run, cpus=args.cpus_per_run, timeout_min=args.timeout_min,
        max_jobs=args.workers or (None if args.cluster == "slurm" else 2))
    try:
        executor = executors.executor(options, name=study["study"])
    except RuntimeError as err:  # e.g. no SLURM here
        usage_error(f"--cluster {args.cluster}: {err}")
    return lambda todo: executors.submitted(todo, executor, options)


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def at_least_zero(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="a study config, e.g. configs/lenet300.json")
    parser.add_argument("--workers", type=positive,
                        help="runs at once: worker processes of one torch thread (pool), or jobs submitted and "
                             "not yet finished (submitit) (default: 2; all runs with --cluster slurm)")
    parser.add_argument("--out", type=Path, help="results folder (default: experiments/results/<study>/)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite table.md and the plot")
    parser.add_argument("--executor", choices=["pool", "submitit"], default="pool",
                        help="where runs execute: a local process pool, or one submitit job per run (default: pool)")
    group = parser.add_argument_group("submitit jobs (with --executor submitit)")
    submitit_flags = [
        group.add_argument("--cluster", choices=["slurm", "local", "debug"], default="slurm",
                           help="submitit's cluster: SLURM jobs, local subprocesses, or in this process "
                                "(default: slurm)"),
        group.add_argument("--slurm-partition", help="SLURM partition of the jobs (default: the cluster's)"),
        group.add_argument("--gpus-per-run", type=at_least_zero, default=0,
                           help="GPUs each job asks for; a run trains on its `device` setting (default auto: "
                                "its GPU when it has one) (default: 0)"),
        group.add_argument("--cpus-per-run", type=positive, default=1,
                           help="CPUs each job asks for, also its torch threads (default: 1)"),
        group.add_argument("--timeout-min", type=positive, default=24 * 60,
                           help="time limit of each job, minutes (default: 1440)"),
        group.add_argument("--jobs-folder", type=Path,
                           help="submitit's folder: each job's logs, by job id (default: <results folder>/jobs)"),
    ]
    args = parser.parse_args()
    if args.executor == "pool":
        for action in submitit_flags:
            if getattr(args, action.dest) != action.default:
                parser.error(f"{action.option_strings[0]} needs --executor submitit")
    try:
        if args.executor == "submitit":
            require("submitit")  # before anything is written
        study = load_study(args.config)
        jobs = build_jobs(study)
    except MissingDependencyError as err:
        usage_error(str(err))
    except BayesHaloError as err:
        usage_error(f"{args.config}: {err}")
    out = args.out or report.results_dir(study)
    out.mkdir(parents=True, exist_ok=True)
    died = 0 if args.report_only else run_study(study, jobs, out, dispatcher(args, study, out))
    report.write_report(study, read_rows(out / "results.csv"), out, args.config)
    print(f"wrote {out / 'results.csv'}, {out / 'table.md'}, {out / 'accuracy_vs_keep.png'}")
    return 1 if died else 0


if __name__ == "__main__":
    sys.exit(main())
