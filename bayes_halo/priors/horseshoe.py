"""Horseshoe priors (Carvalho et al. 2010; Piironen & Vehtari 2017): Bayesian comparators.

Their joint MAP is degenerate (the density is unbounded at ``w = 0``, ``lambda -> 0``), so they
are for SVI and NUTS; ``penalty`` is still ``-log p / N`` up to a constant.
"""
from __future__ import annotations

from collections.abc import Mapping

import pyro
import pyro.distributions as dist
from torch import Tensor
from torch.distributions import constraints

from .base import HyperSite, Prior, check_strength, hyper_site_name


def _half_cauchy_nlp(x: Tensor, scale: float) -> Tensor:
    """``-log HalfCauchy(x; scale)`` up to a constant: ``log(1 + (x/scale)^2)``, summed."""
    return (x / scale).pow(2).log1p().sum()


class Horseshoe(Prior):
    r"""``tau ~ HalfCauchy(tau0)``, ``lambda_j ~ HalfCauchy(1)``, ``w_j ~ Normal(0, tau lambda_j)``.

    One global ``tau`` per weight tensor.  Supports: ``w_j`` real, ``tau, lambda_j > 0``.
    ``N R = log(1 + tau^2/tau0^2) + sum_j [log(1 + lambda_j^2) + w_j^2/(2 tau^2 lambda_j^2) + log(tau lambda_j)]``.
    """

    name = "horseshoe"
    map_is_degenerate = True

    def __init__(self, tau0: float = 1.0) -> None:
        self.tau0 = check_strength("tau0", tau0)

    def hyper_sites(self, site: str, weight: Tensor) -> dict[str, HyperSite]:
        return {"tau": HyperSite(weight.new_tensor(self.tau0), constraints.positive),
                "lambda": HyperSite(weight.new_ones(weight.shape), constraints.positive)}

    def _local_scale(self, hyper: Mapping[str, Tensor]) -> Tensor:
        return hyper["lambda"]

    def _hyper_nlp(self, hyper: Mapping[str, Tensor]) -> Tensor:
        return _half_cauchy_nlp(hyper["tau"], self.tau0) + _half_cauchy_nlp(hyper["lambda"], 1.0)

    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        scale = hyper["tau"] * self._local_scale(hyper)
        normal_nlp = (weight.pow(2) / (2 * scale.pow(2)) + scale.log()).sum()
        return (self._hyper_nlp(hyper) + normal_nlp) / n_data

    def _sample_scales(self, site: str, like: Tensor) -> Tensor:
        tau = pyro.sample(hyper_site_name(site, "tau"), dist.HalfCauchy(like.new_tensor(self.tau0)))
        lam = pyro.sample(hyper_site_name(site, "lambda"),
                          dist.HalfCauchy(like.new_ones(like.shape)).to_event(like.dim()))
        return tau, lam

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        tau, lam = self._sample_scales(site, like)
        return pyro.sample(site, dist.Normal(like.new_zeros(()), tau * lam).to_event(like.dim()))


class RegularizedHorseshoe(Horseshoe):
    r"""Horseshoe with a slab (Piironen & Vehtari 2017).

    ``c^2 ~ InverseGamma(nu/2, nu s^2/2)``, ``lambda~_j^2 = c^2 lambda_j^2 / (c^2 + tau^2 lambda_j^2)``,
    ``w_j ~ Normal(0, tau lambda~_j)``: large weights see a Normal(0, c) slab instead of no
    shrinkage.  ``s`` is ``slab_scale``, ``nu`` is ``slab_df``.  Supports: ``tau, lambda_j, c^2 > 0``.
    """

    name = "regularized-horseshoe"

    def __init__(self, tau0: float = 1.0, slab_scale: float = 2.0, slab_df: float = 4.0) -> None:
        super().__init__(tau0)
        self.slab_scale = check_strength("slab_scale", slab_scale)
        self.slab_df = check_strength("slab_df", slab_df)

    def hyper_sites(self, site: str, weight: Tensor) -> dict[str, HyperSite]:
        sites = super().hyper_sites(site, weight)
        sites["c2"] = HyperSite(weight.new_tensor(self.slab_scale**2), constraints.positive)
        return sites

    def _slab(self) -> tuple[float, float]:
        """InverseGamma (concentration, rate) of ``c^2``."""
        return self.slab_df / 2, self.slab_df * self.slab_scale**2 / 2

    @staticmethod
    def _regularize(lam: Tensor, tau: Tensor, c2: Tensor) -> Tensor:
        return (c2 * lam.pow(2) / (c2 + tau.pow(2) * lam.pow(2))).sqrt()

    def _local_scale(self, hyper: Mapping[str, Tensor]) -> Tensor:
        return self._regularize(hyper["lambda"], hyper["tau"], hyper["c2"])

    def _hyper_nlp(self, hyper: Mapping[str, Tensor]) -> Tensor:
        alpha, beta = self._slab()
        c2 = hyper["c2"]
        return super()._hyper_nlp(hyper) + (alpha + 1) * c2.log() + beta / c2

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        tau, lam = self._sample_scales(site, like)
        alpha, beta = self._slab()
        c2 = pyro.sample(hyper_site_name(site, "c2"),
                         dist.InverseGamma(like.new_tensor(alpha), like.new_tensor(beta)))
        scale = tau * self._regularize(lam, tau, c2)
        return pyro.sample(site, dist.Normal(like.new_zeros(()), scale).to_event(like.dim()))


