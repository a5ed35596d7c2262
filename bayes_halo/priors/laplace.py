"""Laplace priors: the lasso and Zou's (2006) adaptive lasso."""
from __future__ import annotations

from collections.abc import Mapping

import pyro
import pyro.distributions as dist
from torch import Tensor

from ..errors import ConfigError
from .base import Prior, adaptive_weights, check_strength, soft_threshold


def _laplace_site(site: str, like: Tensor, rate: Tensor) -> Tensor:
    """Sample ``w ~ Laplace(0, 1/rate)`` elementwise at ``site`` (one event)."""
    scale = (1.0 / rate).expand(like.shape)
    return pyro.sample(site, dist.Laplace(like.new_zeros(()), scale).to_event(like.dim()))


class Laplace(Prior):
    r"""``w_j ~ Laplace(0, 1/(N xi))``; support: the real line.

    Penalty (per example): ``R(w) = xi * sum_j |w_j|`` (the lasso).
    """

    name = "laplace"
    strengths = ("xi",)

    def __init__(self, xi: float) -> None:
        self.xi = check_strength("xi", xi)

    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        return self.xi * weight.abs().sum()

    def penalty_grad(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor],
                     n_data: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``dR/dw = xi * sign(w)`` (0 at ``w = 0``, autograd's subgradient of ``|w|``)."""
        return self.xi * weight.sign(), {}

    def proximal(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], step: Tensor | float) -> Tensor:
        """Soft thresholding at ``step * xi``."""
        return soft_threshold(weight, step * self.xi)

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        return _laplace_site(site, like, like.new_tensor(n_data * self.xi))


class AdaptiveLaplace(Prior):
    r"""``w_j ~ Laplace(0, 1/(N xi omega_j))`` with fixed per-weight ``omega_j``; support: reals.

    Zou's adaptive lasso: ``omega_j = 1 / (|w_hat_j| + eps)^gamma`` from a pilot estimate
    ``w_hat`` (see :meth:`from_pilot`).  Penalty (per example): ``R(w) = xi * sum_j omega_j |w_j|``.
    """

    name = "adaptive-laplace"
    strengths = ("xi",)

    def __init__(self, xi: float, omega: Mapping[str, Tensor]) -> None:
        self.xi = check_strength("xi", xi)
        self.omega = {site: w.detach() for site, w in omega.items()}

    @classmethod
    def from_pilot(cls, xi: float, pilot: Mapping[str, Tensor], gamma: float = 1.0,
                   eps: float = 1e-6) -> "AdaptiveLaplace":
        """Weights ``omega_j = (|w_hat_j| + eps)^-gamma`` from pilot estimates keyed by site."""
        return cls(xi, adaptive_weights({site: w.abs() for site, w in pilot.items()}, gamma, eps))

    def _omega(self, site: str, weight: Tensor) -> Tensor:
        if site not in self.omega:
            raise ConfigError(f"adaptive Laplace prior has no pilot estimate for {site!r}; "
                              f"it has {sorted(self.omega)}")
        omega = self.omega[site].to(dtype=weight.dtype, device=weight.device)
        if omega.shape != weight.shape:
            raise ConfigError(f"pilot estimate for {site!r} has shape {tuple(omega.shape)}, "
                              f"the weight has {tuple(weight.shape)}")
        return omega

    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        return self.xi * (self._omega(site, weight) * weight.abs()).sum()

    def penalty_grad(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor],
                     n_data: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``dR/dw_j = xi * omega_j * sign(w_j)``."""
        return self.xi * self._omega(site, weight) * weight.sign(), {}

    def proximal(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], step: Tensor | float) -> Tensor:
        """Soft thresholding at ``step * xi * omega_j``."""
        return soft_threshold(weight, self._omega(site, weight) * (step * self.xi))

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        return _laplace_site(site, like, n_data * self.xi * self._omega(site, like))
