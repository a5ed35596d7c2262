"""The training objective as a module, so that DistributedDataParallel sees the whole loss it reduces.

On ``K`` processes each rank holds ``n_r`` of the ``m`` examples of a global batch.  Rank ``r``
back-propagates

    loss_r = (K n_r / m) * mean_nll_r  =  (K / m) * sum_{i in r} nll_i,

and DistributedDataParallel averages the network's gradients over the ranks, which gives exactly
the gradient of the one-process likelihood ``(1/m) sum_i nll_i``, also for a last batch that
``K`` does not divide.  The prior's part of the objective, ``R(w, lambda)``, is not back-propagated
at all: the fused optimiser (:class:`~bayes_halo.training.optim.PriorSGD`) adds its closed-form
gradient inside the step on every rank.  That gradient depends on ``w`` and ``lambda`` alone,
which are the same on every rank, so each rank adds the same full ``dR`` with no communication:
the update is the one-process update of ``mean_nll + R``.

Only the network is a registered submodule: the prior's hyper-variables (HALO's lambdas) are not
DDP parameters and are never reduced (docs/guide/distributed.md).
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..models.bayesian import BayesianModule


class StepOutput(NamedTuple):
    """What one forward pass gives: the loss to back-propagate, the outputs and the share's mean likelihood."""

    loss: Tensor
    outputs: Tensor
    mean_nll: Tensor


class TrainingObjective(nn.Module):
    """``forward(x, y, weight) -> StepOutput`` with ``loss = weight * mean_nll(net(x), y)``.

    ``precision="bf16"`` runs the network's forward pass under bfloat16 autocast and casts its
    outputs to float32 for the likelihood (parameters and lambdas stay float32).  Otherwise the
    outputs keep the network's own dtype: a float64 network trains its likelihood in float64.
    """

    def __init__(self, module: BayesianModule, precision: str = "32") -> None:
        super().__init__()
        self.net = module.net
        self._likelihood = module.likelihood
        self.bf16 = precision == "bf16"

    def forward(self, x: Tensor, y: Tensor, weight: float = 1.0) -> StepOutput:
        autocast = (torch.autocast(device_type=x.device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        with autocast:
            out = self.net(x)
        if self.bf16:
            out = out.float()
        # an empty share (a last batch smaller than the number of ranks) adds zero, keeping the graph
        nll = self._likelihood.mean_nll(out, y) if len(y) else out.sum()
        return StepOutput(weight * nll, out, nll.detach())
