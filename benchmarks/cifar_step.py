"""One CIFAR training step, HALO against plain SGD, as ratios measured in one run.

    python benchmarks/cifar_step.py                               # vgg16-bn and resnet56, batch 64, 2 threads
    python benchmarks/cifar_step.py --models resnet20 --rounds 5 --steps 3

A step is what a CIFAR training loop does per batch: ``prepare_batch`` on a uint8 batch (random
crop + flip, normalisation), forward, likelihood, backward, optimiser step (for HALO the fused
``PriorSGD``, which adds the prior's gradient inside the step, compiled as a 160-epoch run would
be: its compile is paid in the warm-up step). ``plain`` has no prior; ``halo``
puts HALO on the convolutions (weights and biases: the paper's CIFAR scope) with one trainable
lambda per parameter. Both are built from the package's public pieces (``BayesianModule`` and the
trainer's ``build_optimizer``), so any change there is measured too. The variants run interleaved
in rounds (plain, halo, plain, halo, ...) and each ratio is the median over rounds of
(halo / plain) within the same round. The per-epoch line extrapolates the plain step to
``ceil(45,000 / 64) = 704`` steps (the CIFAR training set less a 5,000-image validation split);
it is an estimate from a few steps, not a measured epoch.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see bayes_halo/__init__.py

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import NamedTuple  # noqa: E402

import torch  # noqa: E402

from bayes_halo.data import ArrayData, BatchTransform  # noqa: E402
from bayes_halo.config.recipes import recipe  # noqa: E402
from bayes_halo.pipeline import build_module  # noqa: E402
from bayes_halo.config import RunConfig  # noqa: E402
from bayes_halo.training.trainer import build_optimizer  # noqa: E402

N_TRAIN = 45_000
CIFAR_MEAN, CIFAR_STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)  # any positive values time the same


class Variant(NamedTuple):
    """A training step and, for the breakdown, the part that HALO changes (the optimiser step)."""

    step: Callable[[], None]
    update: Callable[[], None]


def training_step(model: str, halo: bool, data: ArrayData, generator: torch.Generator) -> Variant:
    """One step of the fast path on a fresh batch of ``data`` (the paper's schedule: lr 0.1, momentum 0.9, wd 1e-4).

    ``update`` is the optimiser step alone.
    """
    settings = RunConfig().replace(**{**recipe("paper-cifar").settings, "model": model})  # the paper's CIFAR schedule
    settings = settings.replace(prior="halo", xi=1e-8, psi=1e-8, lambda_decay=1e-4) if halo else settings.replace(prior="none")
    config = settings.train
    module = build_module(settings, data.input_shape, 10, N_TRAIN)
    optimizer = build_optimizer(module, config, n_steps=settings.train.epochs * math.ceil(N_TRAIN / config.batch_size))
    module.train()

    def step() -> None:
        idx = torch.randint(0, len(data.y_train), (config.batch_size,), generator=generator)
        xb = data.prepare_batch(data.x_train[idx], data.augmentation_draws(len(idx), generator))
        loss = module.likelihood.mean_nll(module.net(xb), data.y_train[idx])  # the step adds the prior's gradient
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return Variant(step, optimizer.step)


def time_steps(step: Callable[[], None], steps: int) -> float:
    """Seconds per step over ``steps`` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vgg16-bn", "resnet56"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1024, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (1024,), generator=generator)
    data = ArrayData("cifar-shaped", images, labels, images[:0], labels[:0], images[:0], labels[:0],
                     transform=BatchTransform(CIFAR_MEAN, CIFAR_STD))
    prepare_only = statistics.median(
        time_steps(lambda: data.prepare_batch(images[:64], data.augmentation_draws(64, generator)), 20)
        for _ in range(5))
    print(f"batch 64, 3x32x32 uint8 input, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps")
    print("ratios are medians over rounds of (halo / plain) within the same round")
    print(f"prepare_batch alone (crop + flip + normalise): {1000 * prepare_only:.2f} ms")
    print(f"{'model':<16} {'plain ms/step':>14} {'halo ms/step':>13} {'halo / plain':>13} "
          f"{'plain s/epoch (est.)':>21}   optimiser step plain -> halo")
    steps_per_epoch = math.ceil(N_TRAIN / 64)
    for model in args.models:
        variants = {"plain": training_step(model, False, data, generator),
                    "halo": training_step(model, True, data, generator)}
        for variant in variants.values():  # warm-up
            variant.step()
        times: dict[str, list[float]] = {name: [] for name in (*variants, "update-plain", "update-halo")}
        for _ in range(args.rounds):
            for name, variant in variants.items():
                times[name].append(time_steps(variant.step, args.steps))
            for name, variant in variants.items():
                times[f"update-{name}"].append(time_steps(variant.update, args.steps))
        ratio = statistics.median(h / p for h, p in zip(times["halo"], times["plain"]))
        ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
        print(f"{model:<16} {ms['plain']:>14.1f} {ms['halo']:>13.1f} {ratio:>13.3f} "
              f"{ms['plain'] / 1000 * steps_per_epoch:>21.0f}   "
              f"{ms['update-plain']:.1f} -> {ms['update-halo']:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
