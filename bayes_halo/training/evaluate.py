"""Accuracy: of a network on in-memory tensors, and of predicted probabilities."""
from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def accuracy(net: nn.Module, x: Tensor, y: Tensor, batch_size: int = 2000) -> float:
    """Fraction of ``x`` whose arg-max output equals ``y`` (NaN for an empty set)."""
    if len(y) == 0:
        return float("nan")
    was_training = net.training
    net.eval()
    correct = sum(int((net(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(y), batch_size))
    net.train(was_training)
    return correct / len(y)


def accuracy_of_predictions(probs: Tensor, y: Tensor) -> float:
    """Fraction of correct predictions from class probabilities ``[n, K]`` or ``P(y = 1)`` ``[n]``."""
    predicted = probs.argmax(-1) if probs.dim() == 2 else (probs > 0.5).long()
    return (predicted == y.long()).double().mean().item()
