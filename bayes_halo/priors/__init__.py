"""Sparsity priors as Pyro model fragments with matching closed-form penalties.

See :mod:`bayes_halo.priors.base` for the interface and the per-example scaling convention, and
:mod:`bayes_halo.priors.registry` for registering a prior of your own.
"""
from __future__ import annotations

from .base import HyperSite, Prior, hyper_site_name
from .group import GroupAdaptiveLaplace, GroupHALO, GroupHorseshoe, GroupLaplace, GroupPrior
from .halo import HALO, SharedHALO
from .horseshoe import Horseshoe, RegularizedHorseshoe
from .laplace import AdaptiveLaplace, Laplace
from .normal import Normal
from .registry import PRIORS, prior_class, register_prior, trainable_priors

for _cls in (Normal, Laplace, AdaptiveLaplace, HALO, SharedHALO, Horseshoe, RegularizedHorseshoe, GroupLaplace,
             GroupAdaptiveLaplace, GroupHALO, GroupHorseshoe):
    register_prior(_cls)

__all__ = ["PRIORS", "prior_class", "register_prior", "trainable_priors", "Prior", "HyperSite",
           "hyper_site_name", "Normal", "Laplace", "AdaptiveLaplace", "HALO", "SharedHALO", "Horseshoe",
           "RegularizedHorseshoe", "GroupPrior", "GroupLaplace", "GroupAdaptiveLaplace", "GroupHALO", "GroupHorseshoe"]
