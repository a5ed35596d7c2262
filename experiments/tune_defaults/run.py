"""Tune the default strengths of ``python -m bayes_halo.fit`` on a validation split.

Trains the default schedule (LeNet-300-100, MNIST, 30 epochs, batch 100, lr 0.1, x0.1 at 50%
and 75%) for every grid point, prunes one-shot by global magnitude, and records the VALIDATION
accuracy (5,000 examples carved from the training set) at each keep fraction.  Test accuracy is
recorded too but never used for the choice.

    python experiments/tune_defaults/run.py --prior halo --workers 2 \
        --grid "xi=3e-5,1e-4" "psi=1e-4,1e-3" "lambda_lr=0.1,1.0"
"""
from __future__ import annotations

import argparse
import csv
import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bayes_halo.pipeline import run_fit
from bayes_halo.config.sections import RunConfig

HERE = Path(__file__).parent
KEEPS = (0.05, 0.02, 0.015, 0.01, 0.005)


def parse_grid(items: list[str]) -> list[dict[str, float]]:
    """``["xi=1,2", "psi=3"]`` -> every combination as a dict."""
    axes = {}
    for item in items:
        name, values = item.split("=")
        axes[name] = [float(v) for v in values.split(",")]
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def one_run(args: tuple[str, dict[str, float], int, int, str]) -> list[dict]:
    prior, point, epochs, seed, positivity = args
    config = RunConfig.from_flat(prior=prior, epochs=epochs, seed=seed, keep=KEEPS, threads=1, positivity=positivity, **point)
    start = time.perf_counter()
    result = run_fit(config, progress=False)
    seconds = time.perf_counter() - start
    rows = []
    for r in result.metrics["pruned"]:
        rows.append({"prior": prior, "positivity": config.train.positivity, **point, "epochs": epochs, "seed": seed, "keep": r["keep"],
                     "criterion": r["criterion"], "val_accuracy": r["val_accuracy"],
                     "test_accuracy": r["test_accuracy"], "dense_val": result.metrics["dense"]["val_accuracy"],
                     "seconds": round(seconds, 1)})
    print(prior, point, {r["keep"]: round(r["val_accuracy"], 4) for r in rows if r["criterion"] == "magnitude"},
          f"{seconds:.0f}s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", required=True)
    parser.add_argument("--grid", nargs="+", required=True,
                        help='numeric axes like "xi=3e-5,1e-4" "psi=1e-4" "lambda_lr=0.1"')
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--positivity", choices=("abs", "exp"), default="abs",
                        help="lambda = |raw| (the paper's) or exp(raw) (Pyro's coordinate)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results.csv"))
    args = parser.parse_args()
    jobs = [(args.prior, point, args.epochs, args.seed, args.positivity) for point in parse_grid(args.grid)]
    out = Path(args.out)
    fields = ["prior", "xi", "psi", "lambda_lr", "positivity", "epochs", "seed", "keep", "criterion",
              "val_accuracy", "test_accuracy", "dense_val", "seconds"]
    with ProcessPoolExecutor(args.workers) as pool:
        for rows in pool.map(one_run, jobs):  # appended as each finishes: a killed sweep keeps its rows
            new = not out.exists()
            with out.open("a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
                if new:
                    writer.writeheader()
                writer.writerows(rows)


if __name__ == "__main__":
    main()
