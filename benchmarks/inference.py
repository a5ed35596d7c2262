"""CPU inference of the dense network, the masked network and the export, as ratios measured in one run.

    python benchmarks/inference.py --run experiments/default_run/run 0.02 0.01 \
        --run RUN_DIR_OF_A_LENET5_CAFFE_RUN 0.01 --rounds 10 --threads 2

For each (run, keep fraction) the variants are

* ``dense``: the trained network as saved in ``model.pt``;
* ``masked``: the same network pruned as ``fit`` prunes it (zeros in the weights, same shapes);
* ``masked-hooks``: pruned with ``torch.nn.utils.prune`` hooks still attached (what a user of
  torch's pruning utilities runs: ``weight = weight_orig * mask`` on every call);
* ``export``: the file written by ``python -m bayes_halo.export`` (a ``torch.export`` program),
  loaded with ``load_export``.

Every variant runs at batch 1 and batch 1000 on the same inputs; variants are interleaved in
rounds (A, B, C, ... A, B, C, ...) so that load from other processes hits them alike, and each
ratio is the median over rounds of (dense time / variant time) within the same round: the
speed-up over dense.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see bayes_halo/__init__.py

import argparse  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bayes_halo.export import export_run, load_export  # noqa: E402
from bayes_halo.pipeline import load_run  # noqa: E402
from bayes_halo.pruning import apply_masks, keep_masks, pruned_copy  # noqa: E402
from bayes_halo.pruning.sweep import pruning_criteria  # noqa: E402

BATCHES = (1, 1000)


def variants(run_dir: Path, keep: float, workdir: Path) -> tuple[dict[str, nn.Module], dict]:
    """The networks to time for one (run, keep) pair, and the export's report."""
    run = load_run(run_dir)
    masks = keep_masks(pruning_criteria(run.module)["magnitude"], keep, by=run.config.prune.prune_by)
    dense = run.module.net.eval()
    hooked = copy.deepcopy(dense)
    apply_masks(hooked, masks)
    out = workdir / f"{run_dir.name}-{keep:g}.pt2"
    report = export_run(run_dir, keep, out=out, report=out.with_suffix(".json"), evaluate=False)
    small = load_export(out)
    dense.requires_grad_(False)
    hooked.eval().requires_grad_(False)
    return {"dense": dense, "masked": pruned_copy(dense, masks).eval(), "masked-hooks": hooked,
            "export": small}, report


def time_calls(net: Callable, x: torch.Tensor, calls: int) -> float:
    """Seconds per call of ``net(x)`` over ``calls`` calls."""
    with torch.inference_mode():
        start = time.perf_counter()
        for _ in range(calls):
            net(x)
        return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs="+", action="append", required=True, metavar=("RUN_DIR", "KEEP"),
                        help="a run folder and one or more keep fractions (repeatable)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.05, help="time per variant per round and batch size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for run_dir, *keeps in args.run:
            for keep in map(float, keeps):
                nets, report = variants(Path(run_dir), keep, Path(tmp))
                print(f"\n{report['model']} ({run_dir}) at {100 * keep:g} % kept: {report['architecture_before']} -> "
                      f"{report['architecture_after']}, multiply-adds {report['macs_ratio']:.2f}x fewer, "
                      f"export {report['export_bytes']:,} B")
                benchmark(nets, tuple(report["input_shape"]), args.rounds, args.seconds)


def benchmark(nets: dict[str, Callable], input_shape: tuple[int, ...], rounds: int, seconds: float) -> None:
    """Print median per-call times and median within-round speed-ups over ``dense``."""
    torch.manual_seed(0)
    print(f"{'variant':<14}" + "".join(f"{f'ms @ batch {b}':>16}{'x dense':>9}" for b in BATCHES))
    rows = {name: [] for name in nets}
    for batch in BATCHES:
        x = torch.rand(batch, *input_shape)
        for net in nets.values():  # warm up
            time_calls(net, x, 20)
        calls = {name: max(1, int(seconds / max(time_calls(net, x, 5), 1e-7))) for name, net in nets.items()}
        times = {name: [] for name in nets}
        for _ in range(rounds):
            for name, net in nets.items():
                times[name].append(time_calls(net, x, calls[name]))
        for name in nets:
            speedups = [d / t for d, t in zip(times["dense"], times[name])]
            rows[name].append((1e3 * statistics.median(times[name]), statistics.median(speedups)))
    for name, cells in rows.items():
        print(f"{name:<14}" + "".join(f"{ms:>16.4f}{ratio:>9.2f}" for ms, ratio in cells))


if __name__ == "__main__":
    main()
