"""A quick validation scout for the default strengths of the group priors (``--groups unit``).

LeNet-300-100 on MNIST with ``unit`` groups (the input units of fc1, fc2, fc3), a reduced budget
(``--epochs``, the default schedule's shape: lr 0.1, momentum 0.9, x0.1 at 50 % and 75 %; the
adaptive lasso's pilot: 1 epoch), one thread, seed 0.  For every grid point it records, on the VALIDATION split (5,000 training images):

* ``units``: input units alive per layer, a unit being dead when the RMS of its group is below
  1e-3 (the per-weight ``near_zero`` threshold);
* ``val_units``: validation accuracy with the dead units' groups set to exactly zero;
* ``val_2``: validation accuracy after one-shot global magnitude pruning to 2 % of the weights.

Rule, fixed before running: among the points whose ``val_units`` is within 0.5 points of the
best of every point of that prior in ``results.csv``, the one with the fewest alive units in all;
ties -> the better ``val_units``.

    python experiments/group_defaults/scout.py --prior halo --grid "xi=5e-5,2e-4,1e-3" "psi=1e-4,1e-3"
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import itertools
import time
from pathlib import Path

import torch

from bayes_halo.atomic import write_text
from bayes_halo.config.sections import RunConfig
from bayes_halo.pipeline import load_data, run_fit
from bayes_halo.training.evaluate import split_score

HERE = Path(__file__).parent
FIELDS = ["prior", "xi", "psi", "epochs", "seed", "units_fc1", "units_fc2", "units_fc3", "val_dense", "val_units",
          "val_2", "test_units", "seconds"]


def parse_grid(items: list[str]) -> list[dict[str, float]]:
    """``["xi=1,2", "psi=3"]`` -> every combination as a dict."""
    axes = {name: [float(v) for v in values.split(",")] for name, values in (item.split("=") for item in items)}
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


@torch.no_grad()
def without_dead_units(result) -> tuple[dict[str, int], object]:
    """Alive units per grouping and a copy of the network with the dead groups set to zero."""
    module = result.module
    net = copy.deepcopy(module.net)
    params = dict(net.named_parameters())
    alive = {}
    for site, grouping in module.groupings.items():
        matrix = grouping.matrix(params)
        dead = matrix.pow(2).mean(dim=1).sqrt() < 1e-3
        alive[site] = int((~dead).sum())
        for name, tensor in grouping.scatter(torch.where(dead.unsqueeze(1), 0.0, matrix)).items():
            params[name].copy_(tensor)
    return alive, net


def one_run(prior: str, point: dict[str, float], epochs: int, data) -> dict:
    pilot = {"pilot_epochs": 1} if prior == "adaptive-laplace" else {}
    config = RunConfig.from_flat(prior=prior, groups="unit", epochs=epochs, keep=(0.02,), threads=1, **pilot, **point)
    start = time.perf_counter()
    result = run_fit(config, progress=False, data=data)
    seconds = time.perf_counter() - start
    alive, net = without_dead_units(result)
    row = {"prior": prior, "xi": config.prior.xi, "psi": config.prior.psi, "epochs": epochs, "seed": config.seed,
           **{f"units_{site.split(':')[0]}": n for site, n in alive.items()},
           "val_dense": result.metrics["dense"]["val_accuracy"], "val_units": split_score(net, data, "val"),
           "val_2": result.metrics["pruned"][0]["val_accuracy"], "test_units": split_score(net, data, "test"),
           "seconds": round(seconds, 1)}
    print(row, flush=True)
    return row


def choose(rows: list[dict]) -> dict:
    """The rule of the module docstring, over ``rows`` (one prior's)."""
    best = max(float(r["val_units"]) for r in rows)
    close = [r for r in rows if float(r["val_units"]) >= best - 0.005]
    return min(close, key=lambda r: (sum(int(r[f"units_fc{i}"]) for i in (1, 2, 3)), -float(r["val_units"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", required=True, choices=("halo", "laplace", "adaptive-laplace"))
    parser.add_argument("--grid", nargs="+", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_data(RunConfig.from_flat(threads=1))
    rows = [one_run(args.prior, point, args.epochs, data) for point in parse_grid(args.grid)]
    path = HERE / "results.csv"
    previous = path.read_text() if path.exists() else ",".join(FIELDS) + "\n"
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n").writerows(rows)
    write_text(path, previous + buffer.getvalue())
    with path.open(newline="") as handle:
        print("chosen:", choose([r for r in csv.DictReader(handle) if r["prior"] == args.prior]))


if __name__ == "__main__":
    main()
