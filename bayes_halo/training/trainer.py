"""The fast training path: SGD with momentum on ``mean_nll + penalty``.

Two parameter groups: the network (learning rate ``lr``, optional weight decay) and the prior's
hyper-variables in unconstrained space (``lambda_lr``, no weight decay).  The loop back-propagates
the likelihood alone; the optimiser's step adds the prior's gradient (:mod:`.optim`).  An epoch's
``loss`` is its mean batch likelihood plus the penalty at the epoch's end (``penalty``).  Both follow the same
step schedule (x ``lr_gamma`` at fractions ``lr_milestones`` of training).  A checkpoint is
written atomically after every epoch; ``resume=True`` continues from it and reaches exactly the
result of an uninterrupted run (same seed: the batch order's generator state is saved too).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data import ArrayData, iterate_minibatches
from ..errors import CheckpointError, DivergenceError
from ..models.bayesian import BayesianModule
from .checkpoint import load_checkpoint, save_checkpoint
from .config import FitConfig
from .optim import PriorSGD, compile_pays


@dataclass
class TrainResult:
    """A trained module and its per-epoch history."""

    module: BayesianModule
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        """Wall time spent in training epochs (summed over resumed sessions)."""
        return float(sum(h["seconds"] for h in self.history))


def build_optimizer(module: BayesianModule, config: FitConfig, n_steps: int | None = None) -> torch.optim.Optimizer:
    """SGD with momentum on ``mean_nll + penalty``; the hyper-variables in their own group.

    With a prior, :class:`~bayes_halo.training.optim.PriorSGD` (the prior's gradient inside the
    step: back-propagate the likelihood alone), compiled as ``config.compile_update`` says
    ("auto": when ``n_steps`` training steps pay the compile back); without one, ``torch.optim.SGD``.
    """
    if module.prior is None:
        return torch.optim.SGD(module.network_parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    compile = config.compile_update == "on" or (config.compile_update == "auto" and n_steps is not None
                                                 and compile_pays(module, n_steps))
    return PriorSGD(module, config.lr, config.momentum, config.weight_decay, config.hyper_lr, compile=compile)


def build_schedule(optimizer: torch.optim.Optimizer, config: FitConfig) -> torch.optim.lr_scheduler.MultiStepLR:
    """Multiply every group's learning rate by ``lr_gamma`` at each milestone epoch."""
    milestones = sorted({max(1, round(m * config.epochs)) for m in config.lr_milestones})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=config.lr_gamma)


def near_zero_fraction(module: BayesianModule, threshold: float) -> float:
    """Fraction of the prior's weights with ``|w| < threshold``."""
    weights = list(module.weights().values())
    small = sum(int((w.detach().abs() < threshold).sum()) for w in weights)
    return small / sum(w.numel() for w in weights)


def train(module: BayesianModule, data: ArrayData, config: FitConfig, checkpoint: str | Path | None = None,
          resume: bool = False, progress: bool = True, label: str = "train") -> TrainResult:
    """Train ``module`` on ``data.x_train`` for ``config.epochs`` epochs (see module docstring).

    Raises DivergenceError, naming the epoch, as soon as the loss or a parameter is not finite;
    the last checkpoint on disk then still holds the last finite epoch.
    """
    steps_per_epoch = -(-len(data.y_train) // config.batch_size)
    optimizer = build_optimizer(module, config, n_steps=config.epochs * steps_per_epoch)
    schedule = build_schedule(optimizer, config)
    batches = torch.Generator().manual_seed(config.seed + 1)
    history: list[dict[str, float]] = []
    if resume:
        if checkpoint is None:
            raise CheckpointError("resume needs a checkpoint path")
        history = _restore(checkpoint, module, optimizer, schedule, batches, config)
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=len(history) * steps_per_epoch,
               disable=not progress, desc=label, unit="step", dynamic_ncols=True, mininterval=0.5)
    try:
        for epoch in range(len(history), config.epochs):
            history.append(_epoch(module, data, config, optimizer, batches, epoch, bar))
            schedule.step()
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", acc=f"{history[-1]['train_accuracy']:.3f}",
                            zero=f"{history[-1]['near_zero']:.1%}", refresh=False)
            if checkpoint is not None:
                save_checkpoint(checkpoint, {
                    "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "batches": batches.get_state(),
                    "history": history, "signature": config.training_signature()})
    finally:
        bar.close()
    return TrainResult(module, history)


def _epoch(module: BayesianModule, data: ArrayData, config: FitConfig, optimizer: torch.optim.Optimizer,
           batches: torch.Generator, epoch: int, bar: tqdm) -> dict[str, float]:
    """One pass over the training set; returns the epoch's record."""
    start = time.perf_counter()
    module.train()
    total_loss, correct, seen = 0.0, 0, 0
    for xb, yb in iterate_minibatches(data.x_train, data.y_train, config.batch_size, batches):
        out = module.net(xb)
        loss = module.likelihood.mean_nll(out, yb)  # optimizer.step adds the prior's gradient
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"training diverged in epoch {epoch + 1}: the loss became {loss.item()}; "
                "lower --lr (or --xi/--psi) and start again; no checkpoint of this epoch was written")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(yb)
        correct += int((out.argmax(-1) == yb).sum())
        seen += len(yb)
        bar.update()
    if not all(torch.isfinite(p).all() for p in module.parameters()):
        raise DivergenceError(f"training diverged in epoch {epoch + 1}: a parameter is not finite; "
                              "lower --lr (or --xi/--psi); no checkpoint of this epoch was written")
    with torch.no_grad():
        penalty = float(module.penalty())
    return {"epoch": epoch + 1, "loss": total_loss / seen + penalty, "penalty": penalty, "train_accuracy": correct / seen,
            "near_zero": near_zero_fraction(module, config.near_zero),
            "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start}


def _restore(path: str | Path, module: BayesianModule, optimizer: torch.optim.Optimizer,
             schedule: torch.optim.lr_scheduler.LRScheduler, batches: torch.Generator,
             config: FitConfig) -> list[dict[str, float]]:
    """Load a checkpoint into the training state; returns the history so far."""
    state = load_checkpoint(path, required=("module", "optimizer", "schedule", "batches", "history", "signature"))
    if state["signature"] != config.training_signature():
        changed = sorted(k for k in config.training_signature()
                         if state["signature"].get(k) != config.training_signature()[k])
        raise CheckpointError(f"cannot resume: the checkpoint {path} was trained with different {changed}")
    try:
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit this network ({type(err).__name__})") from None
    schedule.load_state_dict(state["schedule"])
    batches.set_state(state["batches"])
    return list(state["history"])
