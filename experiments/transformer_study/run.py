"""Transformer study: group HALO over heads and MLP units against one-shot pruning of a dense network.

For each seed: a dense run (``--prior none``) pruned one-shot to the same numbers of heads and MLP
units by group magnitude and by the Wanda-style activation-aware score (calibration batch: the
first ``--calibration`` training examples), each without and with ``--finetune-epochs`` of
fine-tuning (likelihood only, masks fixed); and group-HALO runs (``--groups unit``) pruned by the
learned coefficient ``xi / lambda_g^2`` and by group magnitude, with no fine-tuning.  Every network is
the END-of-training model.  Equal counts of heads and units mean equal multiply-adds (every head
costs the same, every unit too), reported per row from the shrunk network.

Strengths are chosen on VALIDATION: with ``--select first-seed`` (the default) every ``--grid`` point is
trained with the first seed, and the point with the best validation metric after pruning (HALO
coefficient criterion) is trained with the other seeds; with ``--select mean`` every point is trained
with every seed and the point with the best mean validation metric over the seeds is reported.  A run
folder that already holds a checkpoint of the same settings is resumed (a finished one only re-evaluated),
so an interrupted or extended study does not train again what it has.
Rows go to ``<out>/results.csv`` (rewritten after every run); ``<out>/summary.md`` (rewritten after
every seed) gives mean and sd over the seeds done so far and the command that made them.

    python experiments/transformer_study/run.py --model vit-tiny --out experiments/transformer_study/results/vit-tiny
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bayes_halo.atomic import write_text
from bayes_halo.config.sections import RunConfig
from bayes_halo.data import ArrayData
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.pipeline import CHECKPOINT, FitResult, finetune, load_data, run_fit
from bayes_halo.pruning import pruned_copy
from bayes_halo.pruning.heads import (head_unit_groupings, keep_counts, magnitude_scores, prune_masks,
                                      wanda_scores)
from bayes_halo.pruning.structured import group_criteria
from bayes_halo.training.evaluate import split_score

FIELDS = ["model", "method", "criterion", "finetune_epochs", "seed", "xi", "psi", "size_power", "heads_kept", "units_kept",
          "multiply_adds", "multiply_adds_dense", "metric", "val", "test", "dense_val", "dense_test",
          "train_seconds"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("vit-tiny", "char-transformer"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--subset", type=int, default=None, help="training examples (before validation)")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--grid", type=str, nargs="+", default=["5e-5:1e-4"], help="group-HALO xi:psi points")
    parser.add_argument("--select", choices=("first-seed", "mean"), default="first-seed",
                        help="choose the grid point on the first seed's validation metric, or on its mean over "
                             "every seed (every point trained with every seed)")
    parser.add_argument("--size-power", type=float, default=0.0,
                        help="group HALO's size_power: both strengths times d^P for a group of d weights "
                             "(5/6: a head and an MLP unit priced as their weights under per-weight HALO)")
    parser.add_argument("--keep-heads", type=float, default=0.5)
    parser.add_argument("--keep-units", type=float, default=0.5)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--calibration", type=int, default=256)
    args = parser.parse_args(argv)
    if args.finetune_epochs < 1 or args.epochs < 1 or args.calibration < 1:
        parser.exit(2, f"{parser.prog}: error: --epochs, --finetune-epochs and --calibration must be at least 1\n")
    return args


def base_config(args: argparse.Namespace, seed: int, **settings: Any) -> RunConfig:
    data = {"dataset": "stdlib-text"} if args.model == "char-transformer" else {
        "dataset": "mnist", "download": False, "data_dir": None, "val_size": args.val_size}
    return RunConfig.from_flat(model=args.model, seed=seed, epochs=args.epochs, optimizer=args.optimizer, lr=args.lr,
                               batch_size=args.batch_size, subset=args.subset, keep=(0.5,), device="cpu",
                               finetune_lr=args.lr / 10, **data, **settings)


def evaluate(net: torch.nn.Module, data: ArrayData) -> tuple[float, float]:
    return split_score(net, data, "val"), split_score(net, data, "test")


def pruned_rows(module: BayesianModule, data: ArrayData, config: RunConfig, args: argparse.Namespace,
                criteria: dict[str, dict[str, torch.Tensor]], method: str, train_seconds: float,
                finetune_epochs: int = 0) -> list[dict[str, Any]]:
    """One row per criterion: prune to the study's counts, shrink, evaluate (and fine-tune if asked)."""
    net = module.net
    n_heads, n_units = keep_counts(net, args.keep_heads, args.keep_units)
    dense_val, dense_test = evaluate(net, data)
    rows = []
    for criterion, scores in criteria.items():
        masks = prune_masks(net, scores, n_heads, n_units)
        for epochs in sorted({0, finetune_epochs}):
            pruned = (pruned_copy(net, masks) if epochs == 0 else
                      finetune(net, masks, data, config.replace(finetune_epochs=epochs)))
            small = pruned.bayes_halo_shrunk()
            val, test = evaluate(small, data)
            rows.append({"model": args.model, "method": method, "criterion": criterion, "finetune_epochs": epochs,
                         "seed": config.seed, "xi": config.prior.xi, "psi": config.prior.psi,
                         "size_power": config.prior.strengths().get("size_power", ""),
                         "heads_kept": sum(small.heads), "units_kept": sum(small.hidden),
                         "multiply_adds": small.multiply_adds(), "multiply_adds_dense": net.multiply_adds(),
                         "metric": data.spec.metric, "val": val, "test": test, "dense_val": dense_val,
                         "dense_test": dense_test, "train_seconds": round(train_seconds, 1)})
    return rows


def fit_or_resume(config: RunConfig, folder: Path, data: ArrayData) -> FitResult:
    """``run_fit`` into ``folder``, resuming its checkpoint if it has one (settings checked on resume)."""
    return run_fit(config, folder, resume=(folder / CHECKPOINT).exists(), overwrite=True, progress=False, data=data)


def dense_rows(args: argparse.Namespace, seed: int, data: ArrayData, out: Path) -> list[dict[str, Any]]:
    config = base_config(args, seed, prior="none")
    result = fit_or_resume(config, out / f"dense-seed{seed}", data)
    net = result.module.net
    heads, units = head_unit_groupings(net)
    calibration = data.prepare_batch(data.x_train[:args.calibration])
    criteria = {"magnitude": magnitude_scores(heads + units, net),
                "wanda": wanda_scores(heads + units, net, calibration)}
    return pruned_rows(result.module, data, config, args, criteria, "dense+one-shot", result.metrics["train_seconds"],
                       args.finetune_epochs)


def halo_rows(args: argparse.Namespace, seed: int, point: str, data: ArrayData, out: Path) -> list[dict[str, Any]]:
    xi, psi = (float(v) for v in point.split(":"))
    config = base_config(args, seed, prior="halo", groups="unit", xi=xi, psi=psi,
                         strength=(f"size_power={args.size_power!r}",))
    result = fit_or_resume(config, out / f"halo-{point.replace(':', '_')}-seed{seed}", data)
    module = result.module
    heads, units = head_unit_groupings(module.net)
    criteria = {"halo-coefficient": group_criteria(module)["coefficient"],
                "magnitude": magnitude_scores(heads + units, module.net)}
    return pruned_rows(module, data, config, args, criteria, "group-halo", result.metrics["train_seconds"])


def write_rows(out: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "results.csv", buffer.getvalue())


def point_label(point: str) -> str:
    """``"4e-6:4e-5"`` as the rows print it (``"4e-06:4e-05"``)."""
    return ":".join(f"{float(v):g}" for v in point.split(":"))


def row_point(row: dict[str, Any]) -> str:
    """The grid point of a group-HALO row, as :func:`point_label` prints it."""
    return f"{row['xi']:g}:{row['psi']:g}"


def summary(rows: list[dict[str, Any]], command: str, chosen: str, selection: dict[str, float], how: str) -> str:
    """Mean and sd over seeds of each (method, criterion, fine-tuning), with the command."""
    metric = rows[0]["metric"]
    lines = [f"# {rows[0]['model']}: heads and MLP units pruned to equal multiply-adds", "",
             f"Command: `{command}`", "",
             f"group-HALO strength (xi:psi) chosen on validation ({how}): {chosen} "
             f"(validation {metric} after pruning, by point: {json.dumps(selection)})", "",
             f"| method | criterion | fine-tune epochs | seeds | heads / units kept | multiply-adds (dense) "
             f"| test {metric} dense | test {metric} pruned | change |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["method"], r["criterion"], r["finetune_epochs"]) for r in rows
                   if r["method"] != "group-halo" or row_point(r) == chosen})
    for method, criterion, epochs in keys:
        group = [r for r in rows if (r["method"], r["criterion"], r["finetune_epochs"]) == (method, criterion, epochs)
                 and (method != "group-halo" or row_point(r) == chosen)]
        dense = [r["dense_test"] for r in group]
        test = [r["test"] for r in group]
        change = [t - d for t, d in zip(test, dense)]

        def stat(values: list[float]) -> str:
            sd = statistics.stdev(values) if len(values) > 1 else float("nan")
            return f"{statistics.fmean(values):.4f} ± {sd:.4f}"
        lines.append(f"| {method} | {criterion} | {epochs} | {len(group)} | {group[0]['heads_kept']} / "
                     f"{group[0]['units_kept']} | {group[0]['multiply_adds']:,} ({group[0]['multiply_adds_dense']:,}) "
                     f"| {stat(dense)} | {stat(test)} | {stat(change)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(2)
    command = "python experiments/transformer_study/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    data = load_data(base_config(args, 0))
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    grid_seeds = args.seeds if args.select == "mean" else args.seeds[:1]
    for seed in grid_seeds:
        for point in args.grid:
            rows += halo_rows(args, seed, point, data, args.out)
            write_rows(args.out, rows)
    selection = {point: statistics.fmean(r["val"] for r in rows if r["criterion"] == "halo-coefficient"
                                         and row_point(r) == point_label(point)) for point in args.grid}
    how = f"seed {args.seeds[0]}" if args.select == "first-seed" else f"mean over seeds {', '.join(map(str, grid_seeds))}"
    better = max if data.spec.higher_is_better else min
    chosen = better(selection, key=selection.get)
    chosen_label = point_label(chosen)
    for seed in args.seeds:
        rows += dense_rows(args, seed, data, args.out)
        if seed not in grid_seeds:
            rows += halo_rows(args, seed, chosen, data, args.out)
        write_rows(args.out, rows)
        write_text(args.out / "summary.md", summary(rows, command, chosen_label, selection, how))
        print(f"seed {seed} done after {time.perf_counter() - start:.0f} s", flush=True)
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
