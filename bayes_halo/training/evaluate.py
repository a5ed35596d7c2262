"""A data set's metric (accuracy, bits per character) of a network on in-memory tensors, and accuracy of
predicted probabilities."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..tasks import TASKS, Task

if TYPE_CHECKING:
    from ..data import ArrayData


@torch.no_grad()
def score(net: nn.Module, x: Tensor, y: Tensor, task: Task, batch_size: int = 2000,
          prepare: Callable[[Tensor], Tensor] | None = None) -> float:
    """``task``'s metric of ``net`` on ``(x, y)`` in batches (NaN for an empty set); see :mod:`bayes_halo.tasks`.

    ``prepare`` maps each stored batch to network input (``ArrayData.prepare_batch``: uint8
    images are normalised there, never augmented); without it the batches go in as they are.
    """
    if prepare is None and x.dtype == torch.uint8:
        raise ConfigError(f"images of dtype {x.dtype} need prepare=data.prepare_batch to become network input")
    prepare = prepare if prepare is not None else (lambda xb: xb)
    was_training = net.training
    net.eval()
    total = sum(float(task.batch_total(net(prepare(x[i:i + batch_size])).float(), y[i:i + batch_size]))
                for i in range(0, len(y), batch_size))
    net.train(was_training)
    return task.finish(total, y.numel())


def accuracy(net: nn.Module, x: Tensor, y: Tensor, batch_size: int = 2000,
             prepare: Callable[[Tensor], Tensor] | None = None) -> float:
    """Fraction of ``x`` whose arg-max output equals ``y`` (NaN for an empty set): :func:`score` of a classifier."""
    return score(net, x, y, TASKS["classification"], batch_size, prepare)


def accuracy_of_predictions(probs: Tensor, y: Tensor) -> float:
    """Fraction of correct predictions from class probabilities ``[..., K]`` or ``P(y = 1)`` ``[n]``."""
    predicted = probs.argmax(-1) if probs.dim() >= 2 else (probs > 0.5).long()
    return (predicted == y.long()).double().mean().item()


def split_score(net: nn.Module, data: "ArrayData", split: str) -> float:
    """The data set's metric (:func:`score`) of ``net`` on its ``"val"`` or ``"test"`` split, batches prepared."""
    return score(net, getattr(data, f"x_{split}"), getattr(data, f"y_{split}"), data.spec,
                 prepare=data.prepare_batch)
