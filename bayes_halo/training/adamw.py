r"""AdamW whose step also applies the prior: the fused counterpart of ``torch.optim.AdamW`` plus the
coupled prior step (``module.attach_optimizer(torch.optim.AdamW(...), "coupled")``).

:class:`~bayes_halo.training.fused.FusedPriorOptimizer` with ``torch.optim.AdamW``'s rule
(no AMSGrad) for every tensor, ``t`` the optimiser's step count::

    p <- p (1 - lr weight_decay)                           (the network's group only)
    m <- beta1 m + (1 - beta1) d,   v <- beta2 v + (1 - beta2) d^2
    p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

with ``d = g + dR/dp`` the gradient of ``mean_nll + R``: the optimiser steps on the MAP objective,
the prior's gradient preconditioned with the likelihood's (the coupled step of
:mod:`~bayes_halo.training.prior_step`, the default for adaptive optimisers).  The same update as
``torch.optim.AdamW`` on ``mean_nll + R`` to float rounding (not bit for bit: the operations are
grouped differently), tested.  With ``compile=True`` each tensor's whole update (prior gradient,
moments, step) is one pass; the step count and the bias corrections are 0-d tensors filled on the
host, so nothing synchronises and nothing recompiles.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..models.bayesian import BayesianModule
from .fused import FusedPriorOptimizer

#: one tensor's AdamW state: (m, v)
Moments = tuple[Tensor, Tensor]


def adamw_rule(param: Tensor, direction: Tensor, moments: Moments,
               coef: tuple[Tensor, Tensor, Tensor | None, float, float, float]) -> None:
    """torch.optim.AdamW's step of one tensor.

    ``coef = (lr / (1 - beta1^t), sqrt(1 - beta2^t), 1 - lr weight_decay or None, beta1, beta2, eps)``.
    """
    step_size, bias2_sqrt, decay, beta1, beta2, eps = coef
    exp_avg, exp_avg_sq = moments
    if decay is not None:
        param.mul_(decay)
    exp_avg.lerp_(direction, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(direction, direction, value=1 - beta2)
    denom = exp_avg_sq.sqrt().div_(bias2_sqrt).add_(eps).div_(step_size)
    param.addcdiv_(exp_avg, denom, value=-1.0)


class PriorAdamW(FusedPriorOptimizer):
    """AdamW on ``mean_nll + R(w, h)`` of ``module``, the prior's part inside ``step``.

    Two parameter groups, as ``torch.optim.AdamW`` would have them: the network (``lr``,
    ``weight_decay``) and the hyper-variables in their coordinate (``hyper_lr``, no weight decay,
    which would change their prior).  Call ``backward`` on the likelihood term only.  The bias
    correction counts the optimiser's steps (``torch.optim.AdamW`` counts each tensor's; they agree
    unless a tensor first receives a gradient late).

    Args:
        module: the network and its prior.
        lr, betas, eps, weight_decay: as ``torch.optim.AdamW`` (no ``amsgrad``); ``weight_decay``
            defaults to 0 (the prior replaces it).
        hyper_lr: the hyper-variables' learning rate (default ``lr``).
        compile: run the update through ``torch.compile`` (one fused pass per tensor).
    """

    rule = staticmethod(adamw_rule)

    def __init__(self, module: BayesianModule, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, hyper_lr: float | None = None,
                 compile: bool = False) -> None:
        if not (lr > 0 and eps > 0 and weight_decay >= 0 and all(0 <= b < 1 for b in betas)):
            raise ConfigError(f"PriorAdamW needs lr > 0, eps > 0, weight_decay >= 0 and betas in [0, 1): "
                              f"got lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(module, lr, weight_decay, hyper_lr, {"betas": tuple(betas), "eps": eps, "step": 0}, compile)

    def tensor_state(self, p: Tensor) -> Moments:
        """``(exp_avg, exp_avg_sq)`` of ``p``."""
        state = self.state[p]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["exp_avg"], state["exp_avg_sq"]

    def coefficients(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """Advances the step count (kept in every group, so it is in ``state_dict``) and returns both groups' coefficients."""
        like = self.param_groups[0]["params"][0]
        out = []
        for index, group in enumerate(self.param_groups):
            group["step"] += 1
            beta1, beta2 = group["betas"]
            lr, t = float(group["lr"]), group["step"]
            decay = 1.0 - lr * float(group["weight_decay"]) if group["weight_decay"] else None
            out.append((self.scalar(f"step_size{index}", lr / (1.0 - beta1 ** t), like),
                        self.scalar(f"bias2_sqrt{index}", (1.0 - beta2 ** t) ** 0.5, like),
                        None if decay is None else self.scalar(f"decay{index}", decay, like),
                        float(beta1), float(beta2), float(group["eps"])))
        return out[0], out[-1]
