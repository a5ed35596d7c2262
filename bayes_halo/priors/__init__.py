"""Sparsity priors as Pyro model fragments with matching closed-form penalties.

See :mod:`bayes_halo.priors.base` for the interface and the per-example scaling convention.
"""
from __future__ import annotations

from ..errors import ConfigError
from .base import HyperSite, Prior, hyper_site_name
from .halo import HALO, SharedHALO
from .horseshoe import Horseshoe, RegularizedHorseshoe
from .laplace import AdaptiveLaplace, Laplace
from .normal import Normal

#: every prior by its command-line name; "none" means no prior (maximum likelihood)
PRIORS: dict[str, type[Prior] | None] = {
    "none": None,
    "ridge": Normal,
    "laplace": Laplace,
    "adaptive-laplace": AdaptiveLaplace,
    "halo": HALO,
    "shared-halo": SharedHALO,
    "horseshoe": Horseshoe,
    "regularized-horseshoe": RegularizedHorseshoe,
}


def prior_class(name: str) -> type[Prior] | None:
    """The prior class registered as ``name`` (``None`` for ``"none"``)."""
    if name not in PRIORS:
        raise ConfigError(f"unknown prior {name!r}; choose one of {', '.join(PRIORS)}")
    return PRIORS[name]


__all__ = ["PRIORS", "prior_class", "Prior", "HyperSite", "hyper_site_name", "Normal", "Laplace",
           "AdaptiveLaplace", "HALO", "SharedHALO", "Horseshoe", "RegularizedHorseshoe"]
