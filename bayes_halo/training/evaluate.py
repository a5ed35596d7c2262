"""Accuracy: of a network on in-memory tensors, and of predicted probabilities."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..data import ArrayData


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor, batch_size: int = 2000,
             prepare: Callable[[Tensor], Tensor] | None = None) -> float:
    """Fraction of ``x`` whose arg-max output equals ``y`` (NaN for an empty set).

    ``prepare`` maps each stored batch to network input (``ArrayData.prepare_batch``: uint8
    images are normalised there, never augmented); without it the batches go in as they are.
    """
    if len(y) == 0:
        return float("nan")
    if prepare is None and not x.is_floating_point():
        raise ConfigError(f"images of dtype {x.dtype} need prepare=data.prepare_batch to become network input")
    prepare = prepare if prepare is not None else (lambda xb: xb)
    was_training = net.training
    net.eval()
    correct = sum(int((net(prepare(x[i:i + batch_size])).argmax(-1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(y), batch_size))
    net.train(was_training)
    return correct / len(y)


def accuracy_of_predictions(probs: Tensor, y: Tensor) -> float:
    """Fraction of correct predictions from class probabilities ``[n, K]`` or ``P(y = 1)`` ``[n]``."""
    predicted = probs.argmax(-1) if probs.dim() == 2 else (probs > 0.5).long()
    return (predicted == y.long()).double().mean().item()


def split_accuracy(net: nn.Module, data: "ArrayData", split: str) -> float:
    """:func:`accuracy` of ``net`` on ``data``'s ``"val"`` or ``"test"`` split, batches prepared by the data set."""
    return accuracy(net, getattr(data, f"x_{split}"), getattr(data, f"y_{split}"), prepare=data.prepare_batch)
