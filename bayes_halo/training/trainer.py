"""The fast training path: SGD with momentum or AdamW on ``mean_nll + penalty``.

The loop back-propagates the likelihood alone; the optimiser's step adds the prior's gradient
(:mod:`.optim`), so the penalty costs no autograd pass and no evaluation per step.

Two parameter groups: the network (learning rate ``lr``, optional weight decay) and the prior's
hyper-variables in unconstrained space (``lambda_lr``, no weight decay).  Both follow the same
step schedule (x ``lr_gamma`` at fractions ``lr_milestones`` of training).  A checkpoint is
written atomically after every epoch; ``resume=True`` continues from it and reaches exactly the
result of an uninterrupted run (same seed: the batch order's generator state is saved too).

The loop never waits for the device within an epoch: losses, accuracy counts and the
non-finite check accumulate there and are read once per epoch.  Every rank of a distributed run
walks the same seeded permutation, so a checkpoint holds nothing rank-dependent and resumes
with any number of processes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data import ArrayData
from ..distributed import Runtime, local_runtime
from ..errors import CheckpointError, ConfigError, DivergenceError
from ..config.sections import TrainConfig, changed_settings
from ..models.bayesian import BayesianModule
from .checkpoint import load_checkpoint, save_checkpoint
from .objective import TrainingObjective
from .adamw import PriorAdamW
from .optim import PriorSGD, compile_pays
from .progress import Progress


@dataclass
class TrainResult:
    """A trained module and its per-epoch history."""

    module: BayesianModule
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        """Wall time spent in training epochs (summed over resumed sessions)."""
        return float(sum(h["seconds"] for h in self.history))


def build_optimizer(module: BayesianModule, config: TrainConfig, n_steps: int | None = None) -> torch.optim.Optimizer:
    """``config.optimizer`` on ``mean_nll + penalty``; the hyper-variables in their own group.

    With a prior, :class:`~bayes_halo.training.optim.PriorSGD` or
    :class:`~bayes_halo.training.adamw.PriorAdamW` (the prior's gradient inside the step:
    back-propagate the likelihood alone), compiled as ``config.compile_update`` says ("auto": when
    ``n_steps`` training steps pay the compile back); without one, ``torch.optim.SGD`` or ``AdamW``.
    """
    adamw = config.optimizer == "adamw"
    if module.prior is None:
        if adamw:
            return torch.optim.AdamW(module.network_parameters(), lr=config.lr, weight_decay=config.weight_decay)
        return torch.optim.SGD(module.network_parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    compile = config.compile_update == "on" or (config.compile_update == "auto" and n_steps is not None
                                                and compile_pays(module, n_steps))
    if adamw:
        return PriorAdamW(module, config.lr, weight_decay=config.weight_decay, hyper_lr=config.hyper_lr,
                          compile=compile)
    return PriorSGD(module, config.lr, config.momentum, config.weight_decay, config.hyper_lr, compile=compile)


def build_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.MultiStepLR:
    """Multiply every group's learning rate by ``lr_gamma`` at each milestone epoch."""
    milestones = sorted({max(1, round(m * config.epochs)) for m in config.lr_milestones})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.lr_gamma)


def near_zero_fraction(module: BayesianModule, threshold: float) -> float:
    """Fraction of the prior's weights with ``|w| < threshold`` (one read from the device)."""
    weights = list(module.weights().values())
    small = torch.stack([(w.detach().abs() < threshold).sum() for w in weights]).sum()
    return int(small) / sum(w.numel() for w in weights)


def train(module: BayesianModule, data: ArrayData, config: TrainConfig, seed: int = 0,
          signature: dict[str, Any] | None = None, checkpoint: str | Path | None = None,
          resume: bool = False, progress: bool = True, label: str = "train",
          runtime: Runtime | None = None) -> TrainResult:
    """Train ``module`` on ``data.x_train`` for ``config.epochs`` epochs (see module docstring).

    ``seed`` seeds the batch order; ``signature`` (the run's settings that a resumed run must
    share) is stored in every checkpoint and checked on resume.

    ``runtime`` (default: one process on ``config.device``) says where: the module and the
    training data move to its device; with several ranks each trains on its share of every
    global batch of ``config.batch_size`` (see :mod:`bayes_halo.training.objective`) and only
    rank 0 writes the checkpoint and shows progress.

    Raises DivergenceError, naming the epoch, when an epoch ends with a non-finite loss or
    parameter; the last checkpoint on disk then still holds the last finite epoch.
    """
    runtime = runtime or local_runtime(config.device)
    if config.batch_size % runtime.world_size:
        raise ConfigError(f"`batch_size` {config.batch_size} is the global batch and must split evenly over "
                          f"{runtime.world_size} processes; choose a multiple of {runtime.world_size}")
    module.to(runtime.device)
    model = _wrap(module, config, runtime)
    steps_per_epoch = -(-data.n_train // config.batch_size)
    optimizer = build_optimizer(module, config, n_steps=config.epochs * steps_per_epoch)
    schedule = build_schedule(optimizer, config)
    # both on the CPU: the same batch order and the same crops on any device and every rank
    batches, crops = torch.Generator().manual_seed(seed + 1), torch.Generator().manual_seed(seed + 2)
    history: list[dict[str, float]] = []
    if resume:
        if checkpoint is None:
            raise CheckpointError("resume needs a checkpoint path")
        history = _restore(checkpoint, module, optimizer, schedule, batches, crops, signature or {})
    data = data.to(runtime.device)
    bar = Progress(total=config.epochs * steps_per_epoch, initial=len(history) * steps_per_epoch,
               disable=not (progress and runtime.master_process), desc=label, unit="step", dynamic_ncols=True,
               mininterval=0.5)
    try:
        for epoch in range(len(history), config.epochs):
            history.append(_epoch(model, module, data, config, optimizer, batches, crops, epoch, bar, runtime))
            schedule.step()
            bar.set_postfix(nll=f"{history[-1]['nll']:.4f}", penalty=f"{history[-1]['penalty']:.4g}",
                            acc=f"{history[-1]['train_accuracy']:.3f}", zero=f"{history[-1]['near_zero']:.1%}",
                            refresh=False)
            if checkpoint is not None and runtime.master_process:
                save_checkpoint(checkpoint, {
                    "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "batches": batches.get_state(), "crops": crops.get_state(),
                    "history": history, "signature": signature or {}})
    finally:
        bar.close()
    return TrainResult(module, history)


def _wrap(module: BayesianModule, config: TrainConfig, runtime: Runtime) -> nn.Module:
    """The objective, in DistributedDataParallel when a process group is up (its network only)."""
    if not runtime.distributed:
        return TrainingObjective(module, config.precision)
    if config.sync_batchnorm:
        if runtime.device.type != "cuda":
            raise ConfigError("`sync_batchnorm` needs CUDA devices: torch's SyncBatchNorm does not run on "
                              f"{runtime.device.type}")
        module.net = nn.SyncBatchNorm.convert_sync_batchnorm(module.net)
    objective = TrainingObjective(module, config.precision)
    return DistributedDataParallel(objective, device_ids=[runtime.device.index] if runtime.device.type == "cuda"
                                   else None)


def _epoch(model: nn.Module, module: BayesianModule, data: ArrayData, config: TrainConfig,
           optimizer: torch.optim.Optimizer, batches: torch.Generator, crops: torch.Generator, epoch: int,
           bar: Progress, runtime: Runtime) -> dict[str, float]:
    """One pass over the training set; returns the epoch's record.

    Sums stay on the device and are read once, at the end: ``nll`` is the mean over examples of
    ``nll_i`` (as it was at each example's step), ``penalty`` ``R`` at the epoch's end (the
    optimiser adds its gradient inside the step, so the loop never evaluates it), ``loss`` their
    sum, ``train_accuracy`` the fraction of labels predicted right (images, or next characters).
    """
    start = time.perf_counter()
    model.train()
    x, y = data.x_train, data.y_train
    n, size = len(y), config.batch_size
    nll_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    order = torch.randperm(n, generator=batches).to(x.device)
    draws = data.augmentation_draws(n, crops)  # one crop and flip per example and epoch, or None
    draws = draws.to(x.device) if draws is not None else None
    for first in range(0, n, size):
        batch = order[first:first + size]
        idx = runtime.share(batch)
        xb = data.prepare_batch(x[idx], None if draws is None else draws[:, idx])
        yb = y[idx]
        step = model(xb, yb, len(idx) * runtime.world_size / len(batch))
        optimizer.zero_grad(set_to_none=True)
        step.loss.backward()
        optimizer.step()
        nll_sum += step.mean_nll * len(idx)
        correct += (step.outputs.argmax(-1) == yb).sum()
        bar.update()
    finite = torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all()
    with torch.no_grad():
        penalty = module.penalty().float()  # the same on every rank: not reduced
    totals = runtime.all_reduce_sum(torch.stack([nll_sum, correct.to(nll_sum.dtype), (~finite).to(nll_sum.dtype)]))
    total_nll, total_correct, not_finite, penalty = torch.cat([totals, penalty.reshape(1)]).tolist()  # one read
    total_loss = total_nll + n * penalty
    if not math.isfinite(total_loss):
        raise DivergenceError(
            f"training diverged in epoch {epoch + 1}: the loss became {total_loss / n}; "
            "lower `lr` (or `xi`/`psi`) and start again; no checkpoint of this epoch was written")
    if not_finite:
        raise DivergenceError(f"training diverged in epoch {epoch + 1}: a parameter is not finite; "
                              "lower `lr` (or `xi`/`psi`); no checkpoint of this epoch was written")
    return {"epoch": epoch + 1, "loss": total_loss / n, "nll": total_nll / n, "penalty": penalty,
            "train_accuracy": total_correct / y.numel(),
            "near_zero": near_zero_fraction(module, config.near_zero),
            "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start}


def _restore(path: str | Path, module: BayesianModule, optimizer: torch.optim.Optimizer,
             schedule: torch.optim.lr_scheduler.LRScheduler, batches: torch.Generator, crops: torch.Generator,
             signature: dict[str, Any]) -> list[dict[str, float]]:
    """Load a checkpoint into the training state; returns the history so far."""
    state = load_checkpoint(path, required=("module", "optimizer", "schedule", "batches", "history", "signature"))
    if state["signature"] != signature:
        raise CheckpointError(f"cannot resume: the checkpoint {path} was trained with other settings (saved -> now): "
                              f"{changed_settings(state['signature'], signature)}")
    try:
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit this network ({type(err).__name__})") from None
    schedule.load_state_dict(state["schedule"])
    batches.set_state(state["batches"])
    if "crops" in state:  # checkpoints of bayes_halo 0.1 predate augmentation
        crops.set_state(state["crops"])
    return list(state["history"])
