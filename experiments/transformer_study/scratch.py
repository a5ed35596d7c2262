"""The pruned size trained from scratch: a dense transformer with the study's kept heads and MLP units.

The study prunes to ``--keep-heads`` of the heads and ``--keep-units`` of the MLP units (50 %: 8 of 16
heads, 256 of 512 units).  This trains, with the same recipe and no prior, the network of that size
laid out evenly (2 heads and 64 units in each of the 4 layers: the same multiply-adds as any pruned
network of the study, since every head costs the same and every unit too) and reports its end-of-
training validation and test metric per seed.  It tells what the pruned size can reach at this
budget when it is trained directly: a pruned network within the goal of the dense one needs the small
network itself to be within it.

    python experiments/transformer_study/scratch.py --model vit-tiny --optimizer adamw --lr 1e-3 --epochs 10 \\
        --out experiments/transformer_study/results/vit-tiny-adamw-scratch
"""
from __future__ import annotations

import argparse
import csv
import io
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from bayes_halo.atomic import write_text
from bayes_halo.config.sections import RunConfig
from bayes_halo.models import register_model
from bayes_halo.models.char_transformer import CharTransformer
from bayes_halo.models.vit import ViTTiny
from bayes_halo.pipeline import load_data, run_fit
from bayes_halo.training.evaluate import split_score

FULL = {"vit-tiny": ViTTiny, "char-transformer": CharTransformer}
LAYERS, HEADS, UNITS = 4, 4, 128  # the registered models' defaults


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=tuple(FULL), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--keep-heads", type=float, default=0.5)
    parser.add_argument("--keep-units", type=float, default=0.5)
    return parser.parse_args(argv)


def register_small(model: str, heads: int, units: int) -> str:
    """Register ``model`` with ``heads`` heads and ``units`` MLP units per layer; returns its name."""
    name = f"{model}-{heads}h-{units}u"

    @register_model(name, overwrite=True)
    def small(input_shape: tuple[int, ...], n_classes: int) -> torch.nn.Module:
        return FULL[model](input_shape, n_classes, heads=(heads,) * LAYERS, hidden=(units,) * LAYERS)

    return name


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(2)
    command = "python experiments/transformer_study/scratch.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    heads, units = round(args.keep_heads * HEADS), round(args.keep_units * UNITS)
    name = register_small(args.model, heads, units)
    data_settings = {"dataset": "stdlib-text"} if args.model == "char-transformer" else {
        "dataset": "mnist", "download": False, "data_dir": None}
    rows: list[dict[str, Any]] = []
    data = None
    for seed in args.seeds:
        config = RunConfig.from_flat(model=name, seed=seed, epochs=args.epochs, optimizer=args.optimizer, lr=args.lr,
                                     batch_size=args.batch_size, keep=(0.5,), device="cpu", prior="none",
                                     **data_settings)
        data = data or load_data(config)
        result = run_fit(config, args.out / f"scratch-seed{seed}", overwrite=True, progress=False, data=data)
        net = result.module.net
        rows.append({"model": args.model, "heads_per_layer": heads, "units_per_layer": units, "seed": seed,
                     "multiply_adds": net.multiply_adds(), "metric": data.spec.metric,
                     "val": split_score(net, data, "val"), "test": split_score(net, data, "test"),
                     "train_seconds": round(result.metrics["train_seconds"], 1)})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text(args.out / "results.csv", buffer.getvalue())
        print(rows[-1], flush=True)
    tests = [r["test"] for r in rows]
    spread = statistics.stdev(tests) if len(tests) > 1 else float("nan")
    write_text(args.out / "summary.md", f"```\n{command}\n```\n\n{name} ({heads} heads and {units} MLP units per "
               f"layer, {rows[0]['multiply_adds']:,} multiply-adds), trained from scratch, {len(rows)} seeds: test "
               f"{rows[0]['metric']} {statistics.mean(tests):.4f} ± {spread:.4f}\n")
    print((args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
