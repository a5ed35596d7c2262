"""Cost of putting HALO's lambdas into DistributedDataParallel's gradient reduction, as a ratio.

    python benchmarks/ddp_lambdas.py                      # 2 gloo ranks on the CPU, LeNet-300-100
    python benchmarks/ddp_lambdas.py --ranks 2 --rounds 10 --steps 20

Two variants of the same HALO training step, global batch 100 split over the ranks:

* ``outside`` (what the package does): only the network is in DDP; every rank computes the same
  lambda gradient from the same ``w`` and ``lambda``, so nothing about lambda is communicated;
* ``inside``: the lambdas are DDP parameters too, so their (already identical) gradients are
  all-reduced with the network's: one extra float per prunable weight every step.

The variants alternate in rounds (A, B, A, B, ...) so that load from other processes hits both
alike; the ratio is the median over rounds of (inside time / outside time) within a round.
Afterwards it checks that both variants kept the lambdas identical on every rank.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see bayes_halo/__init__.py

import argparse  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from bayes_halo.distributed import Runtime  # noqa: E402
from bayes_halo.models import build_model  # noqa: E402
from bayes_halo.models.bayesian import BayesianModule  # noqa: E402
from bayes_halo.priors import HALO  # noqa: E402
from bayes_halo.config import TrainConfig  # noqa: E402
from bayes_halo.training.objective import TrainingObjective  # noqa: E402
from bayes_halo.training.trainer import build_optimizer  # noqa: E402


class WithHyper(nn.Module):
    """The objective with the hyper-variables registered, so DDP reduces their gradients as well."""

    def __init__(self, module: BayesianModule) -> None:
        super().__init__()
        self.objective = TrainingObjective(module)
        self.hyper_raw = module.hyper_raw

    def forward(self, x, y, weight=1.0):
        return self.objective(x, y, weight)


def variant(inside: bool) -> tuple[BayesianModule, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    module = BayesianModule(build_model("lenet300", (1, 28, 28), 10), HALO(5e-5, 1e-4), 55_000, positivity="abs")
    wrapped = DistributedDataParallel(WithHyper(module) if inside else TrainingObjective(module))
    return module, wrapped, build_optimizer(module, TrainConfig())


def worker(rank: int, world: int, port: int, rounds: int, steps: int, batch: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    runtime = Runtime(torch.device("cpu"), rank, world, distributed=True)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(batch, 1, 28, 28, generator=generator), torch.randint(0, 10, (batch,), generator=generator)
    idx = runtime.share(torch.arange(batch))
    xb, yb = x[idx], y[idx]
    variants = {"outside": variant(False), "inside": variant(True)}

    def run(name: str) -> float:
        _, model, optimizer = variants[name]
        runtime.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            model(xb, yb).loss.backward()
            optimizer.step()
        runtime.barrier()
        return time.perf_counter() - start

    run("outside"), run("inside")  # warm-up
    ratios, outside_ms = [], []
    for _ in range(rounds):
        a, b = run("outside"), run("inside")
        ratios.append(b / a)
        outside_ms.append(1000 * a / steps)
    for name, (module, _, _) in variants.items():
        lam = torch.cat([p.detach().reshape(-1) for p in module.hyper_parameters()])
        gathered = [torch.empty_like(lam) for _ in range(world)]
        dist.all_gather(gathered, lam)
        if rank == 0 and not all(torch.equal(g, gathered[0]) for g in gathered):
            raise SystemExit(f"{name}: lambdas differ across ranks")
    if rank == 0:
        n_lambda = sum(p.numel() for p in variants["outside"][0].hyper_parameters())
        print(f"{world} gloo ranks, LeNet-300-100 + HALO ({n_lambda:,} lambdas), global batch {batch}, "
              f"{rounds} rounds x {steps} steps")
        print(f"step time, lambdas outside DDP: {statistics.median(outside_ms):.2f} ms (median)")
        print(f"inside / outside step time: {statistics.median(ratios):.3f} (median; rounds: "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")
        print("lambdas identical on every rank in both variants")
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100, help="global batch")
    args = parser.parse_args()
    mp.spawn(worker, args=(args.ranks, free_port(), args.rounds, args.steps, args.batch), nprocs=args.ranks)


if __name__ == "__main__":
    main()
