"""Independent priors per site: per-layer strengths as one prior."""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ..errors import ConfigError
from .base import HyperSite, Prior


class SitePriors(Prior):
    r"""``p(w, h) = prod_s p_s(w_s, h_s)``: ``by_site[s]`` on site ``s``, ``default`` on every other.

    Every prior is of the same class as ``default`` (the same hyper-variables and learned
    coefficient, e.g. HALO with another ``xi`` on the output layer), so that pruning criteria and
    diagnostics mean the same thing on every site.  ``penalty = sum_s R_s``; each method
    delegates to :meth:`at` ``(site)``.
    """

    name = "site-priors"

    def __init__(self, default: Prior, by_site: Mapping[str, Prior]) -> None:
        for site, prior in by_site.items():
            if type(prior) is not type(default):
                raise ConfigError(f"the prior on {site!r} is a {type(prior).__name__}, the others a "
                                  f"{type(default).__name__}: per-layer priors differ in their strengths only")
        self.default, self.by_site = default, dict(by_site)
        self.map_is_degenerate = default.map_is_degenerate
        self.coefficient_of = default.coefficient_of
        self.coefficient_criterion = default.coefficient_criterion

    def at(self, site: str) -> Prior:
        return self.by_site.get(site, self.default)

    def coefficient(self, value: Tensor) -> Tensor:
        raise ConfigError("per-layer priors: ask `prior.at(site).coefficient(value)`")

    def hyper_sites(self, site: str, weight: Tensor) -> dict[str, HyperSite]:
        return self.at(site).hyper_sites(site, weight)

    def penalty(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], n_data: int) -> Tensor:
        return self.at(site).penalty(site, weight, hyper, n_data)

    def penalty_grad(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor],
                     n_data: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.at(site).penalty_grad(site, weight, hyper, n_data)

    def proximal(self, site: str, weight: Tensor, hyper: Mapping[str, Tensor], step: Tensor | float) -> Tensor | None:
        return self.at(site).proximal(site, weight, hyper, step)

    def profile(self, site: str, weight: Tensor) -> dict[str, Tensor] | None:
        return self.at(site).profile(site, weight)

    def sample(self, site: str, like: Tensor, n_data: int) -> Tensor:
        return self.at(site).sample(site, like, n_data)
