"""Training-step cost of the priors, as ratios measured in one run.

    python benchmarks/step_time.py                 # LeNet-300-100, batch 100, 2 threads
    python benchmarks/step_time.py --threads 1 --rounds 20

Every variant runs the same model, batch and thread count; the variants are interleaved in
rounds (A, B, C, A, B, C, ...) so that load from other processes hits them alike, and each
ratio is the median over rounds of (variant time / plain time) within the same round.
Variants:

* ``plain``: no prior, ``torch.optim.SGD`` (what ``bayes_halo.fit --prior none`` runs);
* ``laplace``, ``halo``: the fast path as ``bayes_halo.fit`` runs it by default, the prior's
  gradient inside the compiled fused optimiser step (``PriorSGD``, ``--compile-update on``);
  ``-eager`` the same update uncompiled (``--compile-update off``); ``plain-compiled`` is the
  fused optimiser without a prior (plain SGD momentum in one compiled pass per tensor);
* ``halo-naive``: the paper's scripts' way, autograd through ``xi*|w|/lambda^2 + psi*|lambda|``
  with ``lambda`` a raw tensor and its own SGD;
* ``halo-pyro-autodelta``: the same objective through Pyro (AutoDelta + Trace_ELBO);
* with ``--svi``, one step of SVI (the fast mean-field engine; an SVI epoch has as many steps as a
  MAP epoch, so its ratio to ``halo`` is the SVI-epoch / MAP-epoch ratio).

OpenMP threads wait passively here (``OMP_WAIT_POLICY=PASSIVE`` unless set), which suits a shared
machine; on a quiet one run it with ``OMP_WAIT_POLICY=ACTIVE`` (docs/guide/speed.md).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; suits a shared machine (docs/guide/speed.md)

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
from bayes_halo.config import TrainConfig  # noqa: E402
from bayes_halo.training.optim import PriorSGD  # noqa: E402
from bayes_halo.training.trainer import build_optimizer  # noqa: E402

N = 55_000


def fast_step(prior, compile_update: str = "on") -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One SGD step of the fast path (what ``bayes_halo.fit`` runs; the prior inside ``optimizer.step``)."""
    torch.manual_seed(0)
    config = TrainConfig(compile_update=compile_update)
    module = BayesianModule(build_model("lenet300", (1, 28, 28), 10), prior, N, positivity=config.positivity)
    optimizer = build_optimizer(module, config)

    def step(x, y):
        loss = module.likelihood.mean_nll(module.net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def plain_compiled_step() -> Callable[[torch.Tensor, torch.Tensor], None]:
    """Plain SGD momentum (no prior) through the compiled fused optimiser."""
    torch.manual_seed(0)
    module = BayesianModule(build_model("lenet300", (1, 28, 28), 10), None, N)
    optimizer = PriorSGD(module, 0.1, 0.9, compile=True)

    def step(x, y):
        loss = module.likelihood.mean_nll(module.net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def naive_halo_step(xi: float, psi: float) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """The paper's scripts' way: autograd through ``xi*|w|/lambda^2 + psi*|lambda|``, lambda raw, own SGD."""
    torch.manual_seed(0)
    net = build_model("lenet300", (1, 28, 28), 10)
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    lambdas = [torch.ones_like(w, requires_grad=True) for w in weights]
    optimizers = [torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
                  torch.optim.SGD(lambdas, lr=0.1, momentum=0.9)]

    def step(x, y):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        for w, lam in zip(weights, lambdas):
            loss = loss + xi * (w.abs() / lam**2).sum() + psi * lam.abs().sum()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
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
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--svi", action="store_true", help="also time one SVI step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    xi, psi = 5e-5, 1e-4  # the default strengths
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch_size, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (args.batch_size,), generator=generator)
    makers = {"plain": lambda: fast_step(None), "plain-compiled": plain_compiled_step,
              "laplace": lambda: fast_step(Laplace(xi)), "laplace-eager": lambda: fast_step(Laplace(xi), "off"),
              "halo": lambda: fast_step(HALO(xi, psi)), "halo-eager": lambda: fast_step(HALO(xi, psi), "off"),
              "halo-naive": lambda: naive_halo_step(xi, psi),
              "halo-pyro-autodelta": lambda: pyro_map_step(HALO(xi, psi))}
    if args.svi:
        makers["halo-svi"] = lambda: svi_step(HALO(xi, psi))
    variants, first_step = {}, {}
    for name, make in makers.items():
        start = time.perf_counter()
        variants[name] = make()
        variants[name](x, y)  # the compiled variants compile here
        first_step[name] = time.perf_counter() - start
        for _ in range(4):  # warm-up
            variants[name](x, y)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(x, y)
            times[name].append((time.perf_counter() - start) / args.steps)
    print(f"LeNet-300-100, batch {args.batch_size}, {args.threads} thread(s), {args.rounds} rounds x {args.steps} steps, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, load average {os.getloadavg()[0]:.1f} at the end")
    print("ratios are medians over rounds of (variant / reference) within the same round")
    print(f"{'variant':<22} {'median ms/step':>15} {'/ plain':>9} {'/ halo-naive':>13} {'/ halo':>8} "
          f"{'first step s':>13}")
    for name, values in times.items():
        ratios = [statistics.median(v / r for v, r in zip(values, times[ref])) for ref in ("plain", "halo-naive", "halo")]
        print(f"{name:<22} {1000 * statistics.median(values):>15.2f} {ratios[0]:>9.2f} {ratios[1]:>13.2f} "
              f"{ratios[2]:>8.2f} {first_step[name]:>13.1f}")


if __name__ == "__main__":
    main()
