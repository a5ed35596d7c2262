"""CPU speed of structurally pruned, exported networks against their dense originals, as ratios in one run.

    python benchmarks/structured_speed.py --rounds 5

Networks (random weights: speed does not depend on their values; the channels removed are chosen
by the L1 norm of their groups, Li et al. 2017, per layer):

* LeNet-5-Caffe (MNIST shape) cut to Bayesian Compression's 5-10 channels and 16 hidden units
  (the issue's goal: at most 153,000 multiply-adds, >= 5.4x faster at batch 256);
* LeNet-300-100 cut to 86-14 hidden units (the inputs stay: export never removes them);
* ResNet-56 and VGG-16-bn (CIFAR shape) with 50 % and 70 % of every coupled channel set zeroed
  (``out-unit`` groupings, ``by="layer"``); what export can remove is what it reports.

Both sides are ``torch.export`` programs loaded from ``.pt2`` files (what a user runs; both in the saved
form of :mod:`bayes_halo.export.deploy`: BatchNorm folded, convolutions channels-last), timed at
batch 1 and 256 with 1 and 2 threads.  Variants run interleaved in rounds (dense, pruned, dense,
pruned, ...) so that load from other processes hits them alike; each speed-up is the median over
rounds of (dense time / pruned time) within a round.  Beside it: the multiply-add ratio and
speed-up / MAC ratio (goal at batch 256: >= 0.75, i.e. within 25 % of the MAC ratio).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see bayes_halo/__init__.py

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bayes_halo.export import export_network, load_export  # noqa: E402
from bayes_halo.groups import build_groupings  # noqa: E402
from bayes_halo.models import build_model, prunable_layers  # noqa: E402
from bayes_halo.pruning import pruned_copy  # noqa: E402
from bayes_halo.pruning.structured import group_masks, keep_groups, norm_scores  # noqa: E402

BATCHES = (1, 256)
THREADS = (1, 2)
MNIST, CIFAR = (1, 28, 28), (3, 32, 32)


def lenet_cut(name: str, widths: list[int]) -> nn.Module:
    """A LeNet whose first ``len(widths)`` coupled unit sets keep the ``widths`` best-L1 units."""
    net = build_model(name, MNIST, 10).eval()
    groupings = build_groupings("out-unit", net, prunable_layers(net), torch.zeros(2, *MNIST))
    scores = norm_scores(groupings, dict(net.named_parameters()), p=1)
    kept = {g.name: keep_groups({g.name: scores[g.name]}, w)[g.name] for g, w in zip(groupings, widths)}
    return pruned_copy(net, group_masks(groupings, kept, dict(net.named_parameters())))


def channels_removed(name: str, fraction: float) -> nn.Module:
    """``name`` on CIFAR-shaped input with ``fraction`` of every coupled channel set zeroed (L1 choice, per layer)."""
    net = build_model(name, CIFAR, 10).eval()
    groupings = build_groupings("out-unit", net, prunable_layers(net), torch.zeros(2, *CIFAR))
    scores = norm_scores(groupings, dict(net.named_parameters()), p=1)
    return pruned_copy(net, group_masks(groupings, keep_groups(scores, 1 - fraction, by="layer"),
                                        dict(net.named_parameters())))


def cases() -> list[tuple[str, Callable[[], nn.Module], Callable[[], nn.Module], tuple[int, ...]]]:
    """(label, dense factory, pruned factory, input shape) for every benchmarked pair."""
    rows = [("lenet5-caffe 5-10-16", lambda: build_model("lenet5-caffe", MNIST, 10),
             lambda: lenet_cut("lenet5-caffe", [5, 10, 16]), MNIST),
            ("lenet300 86-14", lambda: build_model("lenet300", MNIST, 10), lambda: lenet_cut("lenet300", [86, 14]),
             MNIST)]
    for name in ("resnet56", "vgg16-bn"):
        for fraction in (0.5, 0.7):
            rows.append((f"{name} {100 * fraction:.0f} % removed", lambda n=name: build_model(n, CIFAR, 10),
                         lambda n=name, f=fraction: channels_removed(n, f), CIFAR))
    return rows


def time_calls(net: Callable, x: torch.Tensor, calls: int) -> float:
    """Seconds per call of ``net(x)`` over ``calls`` calls."""
    with torch.inference_mode():
        start = time.perf_counter()
        for _ in range(calls):
            net(x)
        return (time.perf_counter() - start) / calls


def speedups(dense: Callable, small: Callable, shape: tuple[int, ...], rounds: int, seconds: float) -> dict:
    """``{(threads, batch): (dense ms, pruned ms, median within-round speed-up)}``."""
    out = {}
    for threads in THREADS:
        torch.set_num_threads(threads)
        for batch in BATCHES:
            x = torch.rand(batch, *shape)
            for net in (dense, small):
                time_calls(net, x, 3)
            calls = {id(net): max(1, int(seconds / max(time_calls(net, x, 2), 1e-7))) for net in (dense, small)}
            pairs = [(time_calls(dense, x, calls[id(dense)]), time_calls(small, x, calls[id(small)]))
                     for _ in range(rounds)]
            out[(threads, batch)] = (1e3 * statistics.median(d for d, _ in pairs),
                                     1e3 * statistics.median(s for _, s in pairs),
                                     statistics.median(d / s for d, s in pairs))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="time per network per round and setting")
    args = parser.parse_args()
    torch.manual_seed(0)
    header = "".join(f" | x @ {t}T b{b}" for t in THREADS for b in BATCHES)
    print(f"| network | units (Conv2d/Linear outputs) | MACs dense -> pruned | MAC ratio{header} | "
          f"speed-up / MAC ratio @ b256 (1T, 2T) |")
    print("|---" * (5 + len(THREADS) * len(BATCHES)) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, make_dense, make_pruned, shape in cases():
            dense_export = export_network(make_dense().eval(), shape)
            small_export = export_network(make_pruned().eval(), shape)
            dense_export.save(Path(tmp) / "dense.pt2")
            small_export.save(Path(tmp) / "small.pt2")
            dense, small = load_export(Path(tmp) / "dense.pt2"), load_export(Path(tmp) / "small.pt2")
            result = speedups(dense, small, shape, args.rounds, args.seconds)
            before, after = dense_export.before["macs"], small_export.after["macs"]
            ratio = before / after
            units = "-".join(str(r["units"]) for r in small_export.after["layers"])
            units = units if len(units) <= 40 else f"{len(small_export.after['layers'])} layers"
            cells = "".join(f" | {result[(t, b)][2]:.2f}" for t in THREADS for b in BATCHES)
            goal = ", ".join(f"{result[(t, 256)][2] / ratio:.2f}" for t in THREADS)
            print(f"| {label} | {units} | {before:,} -> {after:,} | {ratio:.2f}{cells} | {goal} |", flush=True)


if __name__ == "__main__":
    main()
