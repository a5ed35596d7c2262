"""HALO: the hierarchical adaptive lasso (Seto, Wells & Zhang, SDM 2021), per weight and shared."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints
from torch.distributions.transforms import PowerTransform

from .base import HyperSite, Prior, check_strength, hyper_site_name


class _HALOPenalty(torch.autograd.Function):
    r"""``xi * sum_j |w_j| / lambda_j^2 + psi * sum_j lambda_j`` with its gradients formed in one go.

    ``dR/dw_j = xi sign(w_j) / lambda_j^2``, ``dR/dlambda_j = psi - 2 xi |w_j| / lambda_j^3``, computed
    in the forward pass with in-place operations; the backward pass only scales them.  Autograd
    through the plain expression makes several times as many passes over the weights, which on
    LeNet-300-100 costs a large fraction of a whole training step.
    """

    @staticmethod
    def forward(ctx: Any, weight: Tensor, lam: Tensor, xi: float, psi: float) -> Tensor:
        inv = lam.reciprocal()
        inv_sq = inv.square()
        abs_w = weight.abs()
        value = xi * torch.dot(inv_sq.reshape(-1), abs_w.reshape(-1)) + psi * lam.sum()
        grad_w = torch.copysign(inv_sq, weight).mul_(xi)
        grad_lam = abs_w.mul_(inv_sq).mul_(inv).mul_(-2.0 * xi).add_(psi)
        ctx.save_for_backward(grad_w, grad_lam)
        return value

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        grad_w, grad_lam = ctx.saved_tensors
        if grad.item() != 1.0:
            grad_w, grad_lam = grad_w * grad, grad_lam * grad
        return grad_w, grad_lam, None, None


class HALO(Prior):
    r"""Per-weight scales: ``lambda_j ~ Gamma(a, rate N psi)``, ``w_j | lambda_j ~ Laplace(0, lambda_j^2/(N xi))``.

    Supports: ``w_j`` real, ``lambda_j > 0``.  With the default ``a = 3`` the Laplace normaliser
    ``N xi / (2 lambda_j^2)`` cancels the Gamma's ``lambda_j^(a-1)`` exactly and the penalty
    (per example) is the paper's::

        R(w, lambda) = xi * sum_j |w_j| / lambda_j^2 + psi * sum_j lambda_j.

    Any other ``a`` leaves ``(3 - a)/N * sum_j log lambda_j``; with ``a = 1`` (an Exponential
    hyperprior) the joint MAP collapses to ``lambda -> 0, w -> 0``.  Profiling out ``lambda``
    gives ``lambda_j* = (2 xi |w_j| / psi)^(1/3)`` and the bridge penalty
    ``3 * 2^(-2/3) * xi^(1/3) * psi^(2/3) * |w_j|^(1/3)``.
    """

    name = "halo"
    strengths = ("xi", "psi")
    #: chosen on validation for the default schedule (``experiments/tune_defaults``, 3 seeds)
    default_strengths = {"xi": 5e-5, "psi": 1e-4}
    coefficient_of = "lambda"
    coefficient_criterion = "halo-coefficient"

    def __init__(self, xi: float, psi: float, concentration: float = 3.0, init_scale: float = 1.0) -> None:
        self.xi = check_strength("xi", xi)
        self.psi = check_strength("psi", psi)
        self.concentration = check_strength("concentration", concentration)
        self.init_scale = check_strength("init_scale", init_scale)

    def hyper_sites(self, site: str, weight: Tensor) -> dict[str, HyperSite]:
        return {"lambda": HyperSite(weight.new_full(weight.shape, self.init_scale), constraints.positive)}

    def coefficient(self, lam: Tensor) -> Tensor:
        """The learned per-weight lasso coefficient ``xi / lambda_j^2`` (the adaptive weight)."""
        return self.xi / lam.pow(2)

    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        lam = hyper["lambda"]
        value = _HALOPenalty.apply(weight, lam, self.xi, self.psi)
        if self.concentration != 3.0:
            value = value + (3.0 - self.concentration) / n_data * lam.log().sum()
        return value

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        gamma = dist.Gamma(like.new_tensor(self.concentration), like.new_tensor(n_data * self.psi))
        lam = pyro.sample(hyper_site_name(site, "lambda"), gamma.expand(like.shape).to_event(like.dim()))
        laplace = dist.Laplace(like.new_zeros(()), lam.pow(2) / (n_data * self.xi))
        return pyro.sample(site, laplace.to_event(like.dim()))


class SharedHALO(Prior):
    r"""One scale per weight tensor (the paper's single-lambda baseline).

    ``lambda^2 ~ Gamma(P + 1/2, rate N psi)`` for a tensor of ``P`` weights, the sample site being
    ``lambda`` itself (a square-root transform of that Gamma), and
    ``w_j | lambda ~ Laplace(0, lambda^2/(N xi))``.  The Jacobian of the square root and the
    ``P`` Laplace normalisers cancel exactly, leaving (per example)::

        R(w, lambda) = xi * sum_j |w_j| / lambda^2 + psi * lambda^2.

    Sampling ``lambda^2`` directly instead would leave a stray ``log lambda`` in the MAP objective.
    Supports: ``w_j`` real, ``lambda > 0``.
    """

    name = "shared-halo"
    strengths = ("xi", "psi")
    #: the seed-0 scout of ``experiments/pruning_study`` (its choice at 2 % kept)
    default_strengths = {"xi": 3e-3, "psi": 1e-3}
    coefficient_of = "lambda"

    def __init__(self, xi: float, psi: float, init_scale: float = 1.0) -> None:
        self.xi = check_strength("xi", xi)
        self.psi = check_strength("psi", psi)
        self.init_scale = check_strength("init_scale", init_scale)

    def hyper_sites(self, site: str, weight: Tensor) -> dict[str, HyperSite]:
        return {"lambda": HyperSite(weight.new_tensor(self.init_scale), constraints.positive)}

    def coefficient(self, lam: Tensor) -> Tensor:
        """The shared lasso coefficient ``xi / lambda^2``."""
        return self.xi / lam.pow(2)

    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        lam = hyper["lambda"]
        return self.coefficient(lam) * weight.abs().sum() + self.psi * lam.pow(2)

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        lam_sq = dist.Gamma(like.new_tensor(like.numel() + 0.5), like.new_tensor(n_data * self.psi))
        lam = pyro.sample(hyper_site_name(site, "lambda"),
                          dist.TransformedDistribution(lam_sq, [PowerTransform(like.new_tensor(0.5))]))
        laplace = dist.Laplace(like.new_zeros(()), (lam.pow(2) / (n_data * self.xi)).expand(like.shape))
        return pyro.sample(site, laplace.to_event(like.dim()))
