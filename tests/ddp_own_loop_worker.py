"""One own-loop run (attach + attach_optimizer + DistributedDataParallel on the network), under torchrun or alone.

    python tests/ddp_own_loop_worker.py OUT.pt OPTIMIZER          # one process, whole batches
    torchrun --nproc_per_node 2 tests/ddp_own_loop_worker.py OUT.pt OPTIMIZER   # each rank half of every batch

Each rank writes OUT.pt with ``.rank<r>`` appended: the module's state after the steps.
"""
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import bayes_halo
from tiny_models import small_net

OPTIMIZERS = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
              "adamw": lambda p: torch.optim.AdamW(p, lr=0.01)}


def main(out: str, optimizer_name: str) -> None:
    distributed = "RANK" in __import__("os").environ
    if distributed:
        dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(0)
    net = small_net()
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(96, 6, generator=generator), torch.randint(0, 3, (96,), generator=generator)
    model = bayes_halo.attach(net, bayes_halo.HALO(0.01, 0.02), n_data=len(y))
    optimizer = OPTIMIZERS[optimizer_name](net.parameters())
    model.attach_optimizer(optimizer)
    forward = DistributedDataParallel(net) if distributed else net
    for first in range(0, len(y), 32):
        share = slice(first + rank * 32 // world, first + (rank + 1) * 32 // world)  # equal shares: DDP's mean = the batch mean
        loss = F.cross_entropy(forward(x[share]), y[share])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(model.state_dict(), f"{out}.rank{rank}")
    if distributed:
        dist.barrier()  # no rank tears the group down while another still talks to it
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
