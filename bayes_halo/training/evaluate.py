"""Accuracy of a classifier on in-memory tensors."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import ConfigError


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
