"""Forward time of a transformer shrunk to half its heads and MLP units against the dense one, at batch 64.

Both networks come from the same freshly initialised model, heads and units kept by group magnitude
(timing depends on how many are kept in each layer, not on which); or, with ``--run``, from a trained
group-prior run, kept by its learned coefficient (its own layout of heads and units per layer).  Each timing is the median
of ``--rounds`` rounds of ``--repeats`` forward passes (no autograd), with the networks interleaved,
on ``--threads`` CPU threads.  Prints JSON: times, their ratio, the multiply-add ratio.

    python experiments/transformer_study/speed.py --model vit-tiny
    python experiments/transformer_study/speed.py --model vit-tiny --run experiments/transformer_study/results/vit-tiny-adamw/halo-8e-6_8e-5-seed0
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from bayes_halo.models import build_model
from bayes_halo.pipeline import load_run
from bayes_halo.pruning import pruned_copy
from bayes_halo.pruning.heads import head_unit_groupings, keep_counts, magnitude_scores, prune_masks
from bayes_halo.pruning.structured import group_criteria

SHAPES = {"vit-tiny": ((1, 28, 28), 10), "char-transformer": ((64,), 103)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SHAPES), required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run", default=None, help="a trained group-prior run folder of --model (model.pt)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape, classes = SHAPES[args.model]
    if args.run is None:
        dense = build_model(args.model, shape, classes).eval()
        heads, units = head_unit_groupings(dense)
        scores = magnitude_scores(heads + units, dense)
    else:
        module = load_run(args.run).module
        dense, scores = module.net.eval(), group_criteria(module)["coefficient"]
    masks = prune_masks(dense, scores, *keep_counts(dense, 0.5, 0.5))
    small = pruned_copy(dense, masks).bayes_halo_shrunk().eval()
    x = torch.rand(args.batch, *shape) if len(shape) == 3 else torch.randint(0, classes, (args.batch, *shape))
    times: dict[str, list[float]] = {"dense": [], "shrunk": []}
    with torch.no_grad():
        for net in (dense, small):
            net(x)  # warm-up
        for _ in range(args.rounds):
            for name, net in (("dense", dense), ("shrunk", small)):
                start = time.perf_counter()
                for _ in range(args.repeats):
                    net(x)
                times[name].append((time.perf_counter() - start) / args.repeats)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(json.dumps({"model": args.model, "run": args.run, "batch": args.batch, "threads": args.threads,
                      "seconds_per_batch": median, "time_ratio": median["shrunk"] / median["dense"],
                      "multiply_add_ratio": small.multiply_adds() / dense.multiply_adds(),
                      "heads": small.heads, "hidden": small.hidden}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
