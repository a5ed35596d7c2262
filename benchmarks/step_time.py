"""Training-step cost of the priors, as ratios measured in one run.

    python benchmarks/step_time.py                 # LeNet-300-100, batch 100, 2 threads
    python benchmarks/step_time.py --threads 1 --rounds 20

Every variant runs the same model, batch and thread count; the variants are interleaved in
rounds (A, B, C, A, B, C, ...) so that load from other processes hits them alike, and each
ratio is the median over rounds of (variant time / plain time) within the same round.
Variants: plain (no prior), Laplace, HALO (fast torch path), HALO through Pyro (AutoDelta +
Trace_ELBO, the generic path of the same objective) and, with --svi, one step of SVI (the fast
mean-field engine; an SVI epoch has as many steps as a MAP epoch, so its ratio to ``halo`` is
the SVI-epoch / MAP-epoch ratio).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see bayes_halo/__init__.py

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import pyro  # noqa: E402
import torch  # noqa: E402

from bayes_halo.inference.map import map_guide, map_loss  # noqa: E402
from bayes_halo.inference.svi import svi_step_function  # noqa: E402
from bayes_halo.models import build_model  # noqa: E402
from bayes_halo.models.bayesian import BayesianModule  # noqa: E402
from bayes_halo.priors import HALO, Laplace  # noqa: E402
from bayes_halo.config.sections import TrainConfig  # noqa: E402
from bayes_halo.training.trainer import build_optimizer  # noqa: E402

N = 55_000


def fast_step(prior) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One SGD step of the fast path (what ``bayes_halo.fit`` runs)."""
    torch.manual_seed(0)
    config = TrainConfig()
    module = BayesianModule(build_model("lenet300", (1, 28, 28), 10), prior, N, positivity=config.positivity)
    optimizer = build_optimizer(module, config)

    def step(x, y):
        loss = module.likelihood.mean_nll(module.net(x), y) + module.penalty()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def pyro_map_step(prior) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One SGD step of the same objective through Pyro's AutoDelta + Trace_ELBO."""
    torch.manual_seed(0)
    module = BayesianModule(build_model("lenet300", (1, 28, 28), 10), prior, N)
    context = pyro.settings.context(module_local_params=True)
    context.__enter__()
    guide = map_guide(module)
    x0, y0 = torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)
    guide(x0, y0)
    optimizer = torch.optim.SGD(guide.parameters(), lr=0.1 / N, momentum=0.9)

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        map_loss(module, guide, x, y).backward()
        optimizer.step()
    return step


def svi_step(prior) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One step of the package's SVI (mean-field Gaussian) on the same network."""
    torch.manual_seed(0)
    module = BayesianModule(build_model("lenet300", (1, 28, 28), 10), prior, N)
    return svi_step_function(module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--svi", action="store_true", help="also time one SVI step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = {"plain": fast_step(None), "laplace": fast_step(Laplace(3e-5)),
                "halo": fast_step(HALO(3e-5, 1e-4)), "halo-pyro-autodelta": pyro_map_step(HALO(3e-5, 1e-4))}
    if args.svi:
        variants["halo-svi"] = svi_step(HALO(3e-5, 1e-4))
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (args.batch_size,), generator=generator)
    for step in variants.values():  # warm-up
        for _ in range(5):
            step(x, y)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(x, y)
            times[name].append((time.perf_counter() - start) / args.steps)
    print(f"LeNet-300-100, batch {args.batch_size}, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps")
    print("ratios are medians over rounds of (variant / reference) within the same round")
    print(f"{'variant':<22} {'median ms/step':>15} {'/ plain':>9} {'/ halo (fast MAP)':>18}")
    for name, values in times.items():
        to_plain = statistics.median(v / p for v, p in zip(values, times["plain"]))
        to_halo = statistics.median(v / h for v, h in zip(values, times["halo"]))
        print(f"{name:<22} {1000 * statistics.median(values):>15.2f} {to_plain:>9.2f} {to_halo:>18.2f}")


if __name__ == "__main__":
    main()
