"""Where a run executes: its device, and its place among the ranks of a ``torch.distributed`` job.

:class:`Runtime` is the one object the training engine asks: ``device`` for every tensor,
``rank``/``world_size`` for its share of each global batch, and ``master_process`` (rank 0)
for every write and the progress bar.  :func:`distributed_runtime` builds it:

* inside a process group that the caller already started (their own launcher), it joins it;
* under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``
  in the environment) it starts the group with env:// rendezvous, gloo on the CPU and NCCL on
  CUDA, and tears it down at the end;
* otherwise it is one process on the resolved device.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def is_device_name(name: object) -> bool:
    """True for auto, cpu, cuda, cuda:N and mps (whether this machine has the device aside)."""
    return isinstance(name, str) and _DEVICE_PATTERN.fullmatch(name) is not None


def check_device_name(name: str) -> None:
    """Raise ConfigError unless :func:`is_device_name`."""
    if not is_device_name(name):
        raise ConfigError(f"`device` must be one of {', '.join(DEVICES)}, got {name!r}")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """The ``torch.device`` for ``name``; ConfigError (one line) if this machine lacks it.

    ``auto`` is CUDA when available, else the CPU.  ``auto`` and ``cuda`` take GPU
    ``local_rank`` (one GPU per process on a node); ``cuda:N`` is GPU ``N`` exactly.
    """
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("`device` mps: this machine has no usable Apple GPU (MPS); use cpu or auto")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ConfigError(f"`device` {name}: CUDA is not available on this machine "
                          f"(torch {torch.__version__}, torch.cuda.is_available() is False); use cpu or auto")
    index = int(name.partition(":")[2] or local_rank)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"`device` {name}: GPU {index} does not exist; this machine has "
                          f"{torch.cuda.device_count()} (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)


@dataclass(frozen=True)
class Runtime:
    """One process of a run: its device and its rank among ``world_size`` processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: True when a process group is up (then the network trains wrapped in DistributedDataParallel)
    distributed: bool = False

    @property
    def master_process(self) -> bool:
        """Rank 0: the only process that writes files, prints results and shows progress."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over all ranks, in place (a no-op for one process)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        """Wait until every rank gets here (a no-op for one process)."""
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def share(self, batch: Tensor) -> Tensor:
        """This rank's contiguous share of a global batch (sizes differ by at most one)."""
        return batch.tensor_split(self.world_size)[self.rank] if self.world_size > 1 else batch


def local_runtime(device: str | torch.device = "auto") -> Runtime:
    """One process, no process group, on ``device`` (a name or a ``torch.device``)."""
    return Runtime(device if isinstance(device, torch.device) else resolve_device(device))


def backend_for(device: torch.device) -> str:
    """The process-group backend for ``device``: NCCL on CUDA, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def distributed_runtime(device: str = "auto") -> Iterator[Runtime]:
    """The :class:`Runtime` of this process (see the module docstring); tears down a group it started."""
    started = False
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", rank % max(1, torch.cuda.device_count())))
    elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    else:
        yield local_runtime(device)
        return
    where = resolve_device(device, local_rank)
    if where.type == "mps" and world > 1:
        raise ConfigError("`device` mps runs one process only (torch.distributed has no MPS backend)")
    if where.type == "cuda":
        torch.cuda.set_device(where)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(where), init_method="env://", rank=rank, world_size=world)
        started = True
    try:
        yield Runtime(where, rank, world, local_rank, distributed=True)
    finally:
        if started:
            dist.destroy_process_group()
