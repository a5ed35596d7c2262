r"""Group priors: one scale per group of weights that live or die together (units, channels, heads).

A group prior's site value is a grouping's matrix ``W`` (``[G, d]``, row ``g`` = ``w_g``; see
:class:`bayes_halo.groups.Grouping`) and its hyper-variables are ``[G]``-shaped.  All are built on
the radial Laplace density on ``R^d``::

    p(w_g) = a^d Gamma(d/2) / (2 pi^(d/2) Gamma(d)) * exp(-a ||w_g||)       (RadialLaplace)

whose normaliser adds ``-d log a`` to ``-log p``.  Per example (``N R = -log p + const``):

* group Laplace (group lasso): ``a = N xi sqrt(d)``, ``R = xi sqrt(d) sum_g ||w_g||``.  The
  ``sqrt(d)`` is Yuan & Lin's convention (``xi_g = xi sqrt(d)``), so that large groups are not
  favoured; for ``d = 1`` it is the lasso.
* group adaptive Laplace: ``a_g = N xi sqrt(d) omega_g``, ``omega_g = (||w_hat_g|| + eps)^-gamma``
  from a pilot's group norms; ``R = xi sqrt(d) sum_g omega_g ||w_g||``.
* group HALO: ``lambda_g ~ Gamma(2d + 1, rate N c_d psi)``, ``a_g = N c_d xi / lambda_g^2``;
  ``R = c_d (xi sum_g ||w_g|| / lambda_g^2 + psi sum_g lambda_g)`` exactly (the normaliser's
  ``+2d log lambda_g`` cancels the Gamma's ``-2d log lambda_g``), with ``c_d = d^size_power``.
  ``size_power = 0`` (the default) is the math note's form.  Profile over ``lambda_g``:
  ``lambda_g* = (2 xi ||w_g|| / psi)^(1/3)`` (``c_d`` cancels), penalty
  ``3 * 2^(-2/3) c_d xi^(1/3) psi^(2/3) ||w_g||^(1/3)``.  With ``size_power = 5/6`` a group of
  ``d`` weights of root-mean-square ``r`` (``||w_g|| = sqrt(d) r``) costs exactly what ``d``
  per-weight HALO weights of size ``r`` cost (``c_d d^(1/6) = d``): groups of different sizes (an
  attention head and an MLP unit) are then shrunk alike per weight.  The same rule gives group
  lasso's ``sqrt(d)``.
* group horseshoe (Bayesian Compression): ``tau ~ HalfCauchy(tau0)``, ``s_g ~ HalfCauchy(1)``,
  ``w_g ~ Normal(0, tau^2 s_g^2 I)``: degenerate MAP, SVI only.

The subgradient of ``||w_g||`` at ``w_g = 0`` is 0, in the closed forms, in autograd (through
:class:`_GroupNormPenalty`) and hence in the fused optimiser step.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints

from ..errors import ConfigError
from .base import HyperSite, Prior, adaptive_weights, check_strength, hyper_site_name



def _inverse_norms(norms: Tensor) -> Tensor:
    """``1/||w_g||``, and 0 where ``||w_g|| = 0`` (the zero subgradient)."""
    return torch.where(norms > 0, norms.reciprocal(), torch.zeros_like(norms))


class _GroupNormPenalty(torch.autograd.Function):
    r"""``sum_g c_g ||w_g||`` with its gradient ``dR/dW = (c_g / ||w_g||) w_g`` (0 at a zero group) formed once.

    Autograd through a group penalty runs this (or :class:`_GroupHALOPenalty`), and ``penalty_grad``
    calls the same gradient functions: the fused step is bit for bit the autograd path.
    """

    @staticmethod
    def forward(ctx: Any, matrix: Tensor, coefficient: Tensor) -> Tensor:
        norms = torch.linalg.vector_norm(matrix, dim=1)
        ctx.save_for_backward(_norm_term_grad(matrix, norms, coefficient), norms)
        return torch.dot(coefficient, norms)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        grad_matrix, norms = ctx.saved_tensors
        return grad_matrix * grad, norms * grad


def _norm_term_grad(matrix: Tensor, norms: Tensor, coefficient: Tensor) -> Tensor:
    """``d/dW sum_g c_g ||w_g|| = (c_g / ||w_g||) w_g``, rows of zero norm 0."""
    return matrix * (coefficient * _inverse_norms(norms)).unsqueeze(1)


def _group_halo_grads(matrix: Tensor, norms: Tensor, lam: Tensor, xi: float, psi: float) -> tuple[Tensor, Tensor]:
    """Group HALO's ``dR/dW = (xi / lambda_g^2) w_g / ||w_g||`` (0 at a zero group), ``dR/dlambda_g = psi - 2 xi ||w_g|| / lambda_g^3``."""
    inv = lam.reciprocal()
    inv_sq = inv.square()
    grad_lam = norms.mul(inv_sq).mul_(inv).mul_(-2.0 * xi).add_(psi)
    return _norm_term_grad(matrix, norms, inv_sq.mul(xi)), grad_lam


class _GroupHALOPenalty(torch.autograd.Function):
    """``xi sum_g ||w_g|| / lambda_g^2 + psi sum_g lambda_g`` with :func:`_group_halo_grads` formed in the forward pass."""

    @staticmethod
    def forward(ctx: Any, matrix: Tensor, lam: Tensor, xi: float, psi: float) -> Tensor:
        norms = torch.linalg.vector_norm(matrix, dim=1)
        ctx.save_for_backward(*_group_halo_grads(matrix, norms, lam, xi, psi))
        return xi * torch.dot(lam.square().reciprocal(), norms) + psi * lam.sum()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        grad_matrix, grad_lam = ctx.saved_tensors
        return grad_matrix * grad, grad_lam * grad, None, None


class RadialLaplace(dist.TorchDistribution):
    r"""``p(w) = a^d Gamma(d/2) / (2 pi^(d/2) Gamma(d)) exp(-a ||w||)`` on ``R^d`` (event shape ``[d]``).

    Sampling: a direction uniform on the sphere times a radius ``~ Gamma(d, rate a)``.
    """

    arg_constraints = {"rate": constraints.positive}
    support = constraints.independent(constraints.real, 1)

    def __init__(self, rate: Tensor, size: int, validate_args: bool | None = None) -> None:
        self.rate, self.size = rate, int(size)
        super().__init__(rate.shape, torch.Size([self.size]), validate_args=validate_args)

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> "RadialLaplace":
        return RadialLaplace(self.rate.expand(batch_shape), self.size)

    def log_prob(self, value: Tensor) -> Tensor:
        d = self.size
        log_norm = math.lgamma(d / 2) - math.lgamma(d) - math.log(2.0) - d / 2 * math.log(math.pi)
        return -self.rate * torch.linalg.vector_norm(value, dim=-1) + d * self.rate.log() + log_norm

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        direction = torch.randn(shape, dtype=self.rate.dtype, device=self.rate.device)
        direction = direction / torch.linalg.vector_norm(direction, dim=-1, keepdim=True)
        radius = torch.distributions.Gamma(self.rate.new_tensor(float(self.size)), self.rate).sample(sample_shape)
        return direction * radius.unsqueeze(-1)


class GroupPrior(Prior):
    """A prior whose site value is a grouping's ``[G, d]`` matrix (rows = groups); hyper-variables ``[G]``."""


class _NormPrior(GroupPrior):
    """Group priors whose penalty is ``sum_g c_g ||w_g||`` with fixed ``c_g`` (group Laplace, adaptive)."""

    def _coefficients(self, site: str, matrix: Tensor) -> Tensor:
        """``c_g``, ``[G]``, per example."""
        raise NotImplementedError

    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        return _GroupNormPenalty.apply(weight, self._coefficients(site, weight))

    def penalty_grad(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor],
                     n_data: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``dR/dw_g = c_g w_g / ||w_g||`` (0 at a zero group)."""
        norms = torch.linalg.vector_norm(weight, dim=1)
        return _norm_term_grad(weight, norms, self._coefficients(site, weight)), {}

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        rate = n_data * self._coefficients(site, like)
        return pyro.sample(site, RadialLaplace(rate, like.shape[1]).to_event(1))


class GroupLaplace(_NormPrior):
    r"""Group lasso: ``p(w_g) ∝ exp(-N xi sqrt(d) ||w_g||)``; ``R = xi sqrt(d) sum_g ||w_g||`` (Yuan & Lin's sqrt(d))."""

    name = "group-laplace"
    strengths = ("xi",)

    def __init__(self, xi: float) -> None:
        self.xi = check_strength("xi", xi)

    def _coefficients(self, site: str, matrix: Tensor) -> Tensor:
        return matrix.new_full(matrix.shape[:1], self.xi * math.sqrt(matrix.shape[1]))


class GroupAdaptiveLaplace(_NormPrior):
    r"""Adaptive group lasso: ``R = xi sqrt(d) sum_g omega_g ||w_g||``, ``omega_g = (||w_hat_g|| + eps)^-gamma``.

    ``w_hat`` is a pilot fit (see :meth:`from_pilot`); support: ``R^{G x d}``.
    """

    name = "group-adaptive-laplace"
    strengths = ("xi",)

    def __init__(self, xi: float, omega: Mapping[str, Tensor]) -> None:
        self.xi = check_strength("xi", xi)
        self.omega = {site: w.detach() for site, w in omega.items()}

    @classmethod
    def from_pilot(cls, xi: float, pilot: Mapping[str, Tensor], gamma: float = 1.0,
                   eps: float = 1e-6) -> "GroupAdaptiveLaplace":
        """Weights ``omega_g = (||w_hat_g|| + eps)^-gamma`` from pilot matrices ``[G, d]`` keyed by site."""
        return cls(xi, adaptive_weights({site: torch.linalg.vector_norm(w.detach(), dim=1)
                                         for site, w in pilot.items()}, gamma, eps))

    def _coefficients(self, site: str, matrix: Tensor) -> Tensor:
        if site not in self.omega:
            raise ConfigError(f"group adaptive Laplace prior has no pilot estimate for {site!r}; "
                              f"it has {sorted(self.omega)}")
        omega = self.omega[site].to(dtype=matrix.dtype, device=matrix.device)
        if omega.shape != matrix.shape[:1]:
            raise ConfigError(f"pilot estimate for {site!r} has {omega.shape[0]} groups, the site has {matrix.shape[0]}")
        return omega * (self.xi * math.sqrt(matrix.shape[1]))


class GroupHALO(GroupPrior):
    r"""Group HALO: ``lambda_g ~ Gamma(2d + 1, rate N c_d psi)``, ``p(w_g | lambda_g) ∝ exp(-N c_d xi ||w_g|| / lambda_g^2)``.

    Supports: ``w_g`` in ``R^d``, ``lambda_g > 0``.  Per example, exactly (no constant lost)::

        R(W, lambda) = c_d (xi * sum_g ||w_g|| / lambda_g^2 + psi * sum_g lambda_g),   c_d = d^size_power.

    ``dR/dw_g = c_d xi w_g / (lambda_g^2 ||w_g||)`` (0 at a zero group),
    ``dR/dlambda_g = c_d (psi - 2 xi ||w_g|| / lambda_g^3)``.  ``size_power`` 0 (default): the math
    note's form; 5/6: a group costs what its ``d`` weights would cost under per-weight HALO at the
    group's root-mean-square (see the module docstring).
    """

    name = "group-halo"
    strengths = ("xi", "psi", "size_power")
    coefficient_of = "lambda"

    def __init__(self, xi: float, psi: float, size_power: float = 0.0, init_scale: float = 1.0) -> None:
        self.xi = check_strength("xi", xi)
        self.psi = check_strength("psi", psi)
        self.size_power = check_strength("size_power", size_power, allow_zero=True)
        self.init_scale = check_strength("init_scale", init_scale)

    def size_scale(self, size: int) -> float:
        """``c_d = d^size_power``, the factor on both strengths for groups of ``d = size`` weights."""
        return float(size) ** self.size_power

    def hyper_sites(self, site: str, weight: Tensor) -> dict[str, HyperSite]:
        return {"lambda": HyperSite(weight.new_full(weight.shape[:1], self.init_scale), constraints.positive)}

    def coefficient(self, lam: Tensor, size: int = 1) -> Tensor:
        """The learned per-group lasso coefficient ``c_d xi / lambda_g^2`` of groups of ``size`` weights."""
        return (self.size_scale(size) * self.xi) / lam.pow(2)

    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        scale = self.size_scale(weight.shape[1])
        return _GroupHALOPenalty.apply(weight, hyper["lambda"], scale * self.xi, scale * self.psi)

    def penalty_grad(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor],
                     n_data: int) -> tuple[Tensor, dict[str, Tensor]]:
        scale = self.size_scale(weight.shape[1])
        grad_w, grad_lam = _group_halo_grads(weight, torch.linalg.vector_norm(weight, dim=1), hyper["lambda"],
                                             scale * self.xi, scale * self.psi)
        return grad_w, {"lambda": grad_lam}

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        size = like.shape[1]
        scale = self.size_scale(size)
        gamma = dist.Gamma(like.new_tensor(2.0 * size + 1.0), like.new_tensor(n_data * scale * self.psi))
        lam = pyro.sample(hyper_site_name(site, "lambda"), gamma.expand(like.shape[:1]).to_event(1))
        return pyro.sample(site, RadialLaplace(n_data * scale * self.xi / lam.square(), size).to_event(1))


class GroupHorseshoe(GroupPrior):
    r"""Group horseshoe (Bayesian Compression): ``tau ~ HalfCauchy(tau0)``, ``s_g ~ HalfCauchy(1)``, ``w_g ~ Normal(0, tau^2 s_g^2 I)``.

    ``N R = log(1 + tau^2/tau0^2) + sum_g [log(1 + s_g^2) + ||w_g||^2 / (2 tau^2 s_g^2) + d log(tau s_g)]``
    (``s_g`` is the hyper-variable ``lambda``).  Degenerate MAP (at ``w_g = 0``, ``s_g -> 0``): SVI only.
    """

    name = "group-horseshoe"
    map_is_degenerate = True
    coefficient_of = None

    def __init__(self, tau0: float = 1.0) -> None:
        self.tau0 = check_strength("tau0", tau0)

    def hyper_sites(self, site: str, weight: Tensor) -> dict[str, HyperSite]:
        return {"tau": HyperSite(weight.new_tensor(self.tau0), constraints.positive),
                "lambda": HyperSite(weight.new_ones(weight.shape[:1]), constraints.positive)}

    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        tau, scale = hyper["tau"], hyper["lambda"]
        sd = tau * scale
        normal = (weight.square().sum(dim=1) / (2 * sd.square()) + weight.shape[1] * sd.log()).sum()
        cauchy = (tau / self.tau0).square().log1p() + scale.square().log1p().sum()
        return (cauchy + normal) / n_data

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        tau = pyro.sample(hyper_site_name(site, "tau"), dist.HalfCauchy(like.new_tensor(self.tau0)))
        scale = pyro.sample(hyper_site_name(site, "lambda"),
                            dist.HalfCauchy(like.new_ones(like.shape[:1])).to_event(1))
        sd = (tau * scale).unsqueeze(1).expand(like.shape)
        return pyro.sample(site, dist.Normal(like.new_zeros(()), sd).to_event(2))
