"""What a data set's labels are, their likelihood, and the metric a run reports (declared by the data set).

* ``classification``: ``x [n, C, H, W]``, ``y [n]``; categorical likelihood on logits ``[B, K]``;
  metric ``accuracy`` = (1/n) sum_i [argmax_k out_ik = y_i] (higher is better).
* ``next-character``: ``x, y [n, T]`` with ``y[:, t] = x[:, t + 1]`` (character indices); categorical
  likelihood per position on logits ``[B, T, V]``; metric ``bits_per_character`` =
  (1/(n T)) sum_{i,t} -log2 p(y_it) = (mean nll in nats) / ln 2 (lower is better).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from .errors import ConfigError
from .models.likelihoods import Categorical, Likelihood, SequenceCategorical


@dataclass(frozen=True)
class Task:
    """A kind of supervised data: its likelihood and its metric ``scale * total / count`` (``val_<metric>``...)."""

    name: str
    metric: str
    higher_is_better: bool
    likelihood: type[Likelihood]
    batch_total: Callable[[Tensor, Tensor], Tensor]  # (outputs, labels) -> the metric's float64 sum over the batch
    scale: float = 1.0
    input_dtype: torch.dtype = torch.float32  # of the network's input (after ``ArrayData.prepare_batch``)

    def finish(self, total: float, count: int) -> float:
        """The metric from its total over ``count`` labels (NaN when there are none)."""
        return self.scale * total / count if count else float("nan")


def correct_predictions(out: Tensor, y: Tensor) -> Tensor:
    """``sum_i [argmax_k out_ik = y_i]``."""
    return (out.argmax(-1) == y).sum().to(torch.float64)


def next_character_nats(out: Tensor, y: Tensor) -> Tensor:
    """``sum_{i,t} -log softmax(out_it)[y_it]`` in nats (float64)."""
    return F.cross_entropy(out.reshape(-1, out.shape[-1]).double(), y.reshape(-1), reduction="sum")


TASKS: dict[str, Task] = {
    "classification": Task("classification", "accuracy", True, Categorical, correct_predictions),
    "next-character": Task("next-character", "bits_per_character", False, SequenceCategorical,
                           next_character_nats, 1 / math.log(2), torch.int64),
}


def task(name: str) -> Task:
    """The task called ``name``."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[name]
