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

from .base import HyperSite, Prior, check_strength, hyper_site_name, soft_threshold


class _HALOPenalty(torch.autograd.Function):
    r"""``xi * sum_j |w_j| / lambda_j^2 + psi * sum_j lambda_j`` with its gradients formed in one go.

    ``dR/dw_j = xi sign(w_j) / lambda_j^2`` (0 at ``w_j = 0``, the subgradient used everywhere),
    ``dR/dlambda_j = psi - 2 xi |w_j| / lambda_j^3``, computed
    in the forward pass with in-place operations; the backward pass only scales them (no host
    synchronisation).  Used where autograd runs through the penalty (SVI, NUTS, ``objective``);
    training uses the fused optimiser instead.
    """

    @staticmethod
    def forward(ctx: Any, weight: Tensor, lam: Tensor, xi: float, psi: float) -> Tensor:
        inv = lam.reciprocal()
        inv_sq = inv.square()
        abs_w = weight.abs()
        value = xi * torch.dot(inv_sq.reshape(-1), abs_w.reshape(-1)) + psi * lam.sum()
        grad_w = weight.sign().mul_(inv_sq).mul_(xi)  # the operations of HALO.penalty_grad
        grad_lam = abs_w.mul_(inv_sq).mul_(inv).mul_(-2.0 * xi).add_(psi)
        ctx.save_for_backward(grad_w, grad_lam)
        return value

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        grad_w, grad_lam = ctx.saved_tensors
        return grad_w * grad, grad_lam * grad, None, None


class GammaGaussian(dist.TorchDistribution):
    r"""``p(lambda) ∝ Gamma(lambda; a, rate b) * exp(-c lambda^2 / 2)`` on ``lambda > 0`` (unnormalised).

    ``log_prob = Gamma(a, b).log_prob(lambda) - c lambda^2 / 2``: the Gamma's log density plus a
    Gaussian factor ``Normal(0, c^(-1/2))``, *without* the product's normaliser (a constant in
    ``lambda``, so MAP, SVI gradients and NUTS are unaffected; ELBO values shift by a constant).
    ``sample`` is exact, by rejection from whichever of ``Gamma(a, b)`` (accept with
    ``exp(-c lambda^2/2)``) and ``sqrt(chi2_a / c)`` (accept with ``exp(-b lambda)``) accepts more.
    """

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive,
                       "decay": constraints.positive}
    support = constraints.positive

    def __init__(self, concentration: Tensor, rate: Tensor, decay: Tensor, validate_args: bool | None = None) -> None:
        self.concentration, self.rate, self.decay = torch.broadcast_tensors(concentration, rate, decay)
        super().__init__(self.concentration.shape, validate_args=validate_args)

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> "GammaGaussian":
        shape = torch.Size(batch_shape)
        return GammaGaussian(self.concentration.expand(shape), self.rate.expand(shape), self.decay.expand(shape))

    def log_prob(self, value: Tensor) -> Tensor:
        gamma = dist.Gamma(self.concentration, self.rate).log_prob(value)
        return gamma - 0.5 * self.decay * value.square()

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        a, b, c = (t.expand(shape) for t in (self.concentration, self.rate, self.decay))
        # acceptance near the bulk of each proposal: Gamma at its mean a/b, chi at its rms sqrt(a/c)
        use_gamma = -c * (a / b).square() / 2 > -b * (a / c).sqrt()
        out = torch.full(shape, float("nan"), dtype=a.dtype, device=a.device)
        todo = torch.ones(shape, dtype=torch.bool, device=a.device)
        while bool(todo.any()):  # prior sampling only, never in a training loop
            from_gamma = torch.distributions.Gamma(a, b).sample()
            from_chi = (torch.distributions.Chi2(a).sample() / c).sqrt()
            lam = torch.where(use_gamma, from_gamma, from_chi)
            log_accept = torch.where(use_gamma, -0.5 * c * lam.square(), -b * lam)
            accept = todo & (torch.rand_like(lam).log() < log_accept)
            out = torch.where(accept, lam, out)
            todo = todo & ~accept
        return out


class HALO(Prior):
    r"""Per-weight scales: ``lambda_j ~ Gamma(a, rate N psi)``, ``w_j | lambda_j ~ Laplace(0, lambda_j^2/(N xi))``.

    Supports: ``w_j`` real, ``lambda_j > 0``.  With the default ``a = 3`` the Laplace normaliser
    ``N xi / (2 lambda_j^2)`` cancels the Gamma's ``lambda_j^(a-1)`` exactly and the penalty
    (per example) is the paper's::

        R(w, lambda) = xi * sum_j |w_j| / lambda_j^2 + psi * sum_j lambda_j
                       [+ lambda_decay / 2 * sum_j lambda_j^2].

    ``lambda_decay`` (default 0, off) is a weight decay on the lambdas written as part of the
    prior, so that MAP = penalised objective stays exact: ``lambda_j ~ Gamma(a, N psi) x
    Normal(0, 1/(N lambda_decay))`` restricted to ``lambda_j > 0`` (:class:`GammaGaussian`, an
    unnormalised density; the paper's CIFAR recipe used 1e-4).
    Any other ``a`` leaves ``(3 - a)/N * sum_j log lambda_j``; with ``a = 1`` (an Exponential
    hyperprior) the joint MAP collapses to ``lambda -> 0, w -> 0``.  Profiling out ``lambda``
    gives ``lambda_j* = (2 xi |w_j| / psi)^(1/3)`` and the bridge penalty
    ``3 * 2^(-2/3) * xi^(1/3) * psi^(2/3) * |w_j|^(1/3)``.
    """

    name = "halo"
    strengths = ("xi", "psi", "lambda_decay")
    coefficient_of = "lambda"
    coefficient_criterion = "halo-coefficient"

    def __init__(self, xi: float, psi: float, concentration: float = 3.0, init_scale: float = 1.0,
                 lambda_decay: float = 0.0) -> None:
        self.xi = check_strength("xi", xi)
        self.psi = check_strength("psi", psi)
        self.concentration = check_strength("concentration", concentration)
        self.init_scale = check_strength("init_scale", init_scale)
        self.lambda_decay = check_strength("lambda_decay", lambda_decay, allow_zero=True)

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
        if self.lambda_decay > 0.0:
            value = value + 0.5 * self.lambda_decay * lam.square().sum()
        return value

    def penalty_grad(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor],
                     n_data: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``dR/dw = xi sign(w)/lambda^2`` (0 at ``w = 0``), ``dR/dlambda = psi - 2 xi |w|/lambda^3 [+ (3-a)/(N lambda)] [+ decay lambda]``."""
        lam = hyper["lambda"]
        inv = lam.reciprocal()
        inv_sq = inv.square()
        grad_lam = weight.abs().mul_(inv_sq).mul_(inv).mul_(-2.0 * self.xi).add_(self.psi)
        if self.concentration != 3.0:
            grad_lam = grad_lam + (3.0 - self.concentration) / n_data / lam
        if self.lambda_decay > 0.0:
            grad_lam = grad_lam.add_(lam, alpha=self.lambda_decay)
        return weight.sign().mul_(inv_sq).mul_(self.xi), {"lambda": grad_lam}

    def proximal(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], step: Tensor | float) -> Tensor:
        """In ``w`` at fixed ``lambda``: soft thresholding at ``step * xi / lambda_j^2``."""
        return soft_threshold(weight, self.coefficient(hyper["lambda"]).mul_(step))

    def profile(self, site: str, weight: Tensor) -> dict[str, Tensor] | None:
        """``lambda_j* = (2 xi |w_j| / psi)^(1/3)`` (the default ``a = 3`` without ``lambda_decay``; else None).

        At ``lambda*`` the penalty is the bridge ``3 * 2^(-2/3) xi^(1/3) psi^(2/3) |w_j|^(1/3)``
        and the lasso coefficient ``xi / lambda_j*^2`` is infinite at ``w_j = 0``.
        """
        if self.concentration != 3.0 or self.lambda_decay > 0.0:
            return None
        return {"lambda": weight.abs().mul_(2.0 * self.xi / self.psi).pow_(1.0 / 3.0)}

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        a, rate = like.new_tensor(self.concentration), like.new_tensor(n_data * self.psi)
        hyperprior = (GammaGaussian(a, rate, like.new_tensor(n_data * self.lambda_decay)) if self.lambda_decay > 0.0
                      else dist.Gamma(a, rate))
        lam = pyro.sample(hyper_site_name(site, "lambda"), hyperprior.expand(like.shape).to_event(like.dim()))
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

    def penalty_grad(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor],
                     n_data: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``dR/dw = xi sign(w)/lambda^2``, ``dR/dlambda = -2 xi sum|w|/lambda^3 + 2 psi lambda``."""
        lam = hyper["lambda"]
        coefficient = self.coefficient(lam)
        grad_lam = -2.0 * coefficient * weight.abs().sum() / lam + 2.0 * self.psi * lam
        return coefficient * weight.sign(), {"lambda": grad_lam}

    def proximal(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], step: Tensor | float) -> Tensor:
        """In ``w`` at fixed ``lambda``: soft thresholding at ``step * xi / lambda^2``."""
        return soft_threshold(weight, self.coefficient(hyper["lambda"]) * step)

    def profile(self, site: str, weight: Tensor) -> dict[str, Tensor]:
        """``lambda* = (xi sum_j |w_j| / psi)^(1/4)``."""
        return {"lambda": weight.abs().sum().mul_(self.xi / self.psi).pow_(0.25)}

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        lam_sq = dist.Gamma(like.new_tensor(like.numel() + 0.5), like.new_tensor(n_data * self.psi))
        lam = pyro.sample(hyper_site_name(site, "lambda"),
                          dist.TransformedDistribution(lam_sq, [PowerTransform(like.new_tensor(0.5))]))
        laplace = dist.Laplace(like.new_zeros(()), (lam.pow(2) / (n_data * self.xi)).expand(like.shape))
        return pyro.sample(site, laplace.to_event(like.dim()))
