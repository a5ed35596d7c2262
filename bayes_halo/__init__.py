"""bayes_halo: sparsity penalties as Bayesian hierarchical priors (HALO and friends) in Pyro.

The main objects:

* :mod:`bayes_halo.priors`: Normal, Laplace, AdaptiveLaplace, HALO, SharedHALO, Horseshoe,
  RegularizedHorseshoe; each a Pyro fragment with a matching closed-form penalty; and the group priors
  GroupLaplace, GroupAdaptiveLaplace, GroupHALO, GroupHorseshoe (one scale per unit, channel or head).
* :func:`attach`: a prior on the layers of any ``torch.nn.Module``, for your own loop and optimiser;
  it returns a :class:`BayesianModule` (``penalty``, ``add_prior_grad_``, ``attach_optimizer``,
  ``prune``, ``export``), whose fast torch objective and Pyro model are the same estimator.
* :class:`PriorSGD`, :class:`PriorAdamW`: SGD with momentum and AdamW with the prior's closed-form
  gradient fused in their step (train on the likelihood alone).
* :func:`fit_map`: MAP through Pyro (``AutoDelta``) for small models.
"""
from __future__ import annotations

from .threads import entry_point_threading

entry_point_threading()  # python -m bayes_halo.fit/path/export: a bounded OpenMP spin, set before torch loads

from importlib.metadata import PackageNotFoundError, version

from .api import attach
from .errors import BayesHaloError, CheckpointError, ConfigError, DataUnavailableError, DivergenceError
from .inference.map import MAPResult, fit_map
from .models.bayesian import BayesianModule
from .priors import (HALO, PRIORS, AdaptiveLaplace, GroupAdaptiveLaplace, GroupHALO, GroupHorseshoe, GroupLaplace,
                     Horseshoe, Laplace, Normal, Prior, RegularizedHorseshoe, SharedHALO, SitePriors, register_prior)
from .training.adamw import PriorAdamW
from .training.optim import PriorSGD

try:
    __version__ = version("bayes_halo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["attach", "BayesianModule", "PriorSGD", "PriorAdamW", "fit_map", "MAPResult", "Prior", "PRIORS", "Normal", "Laplace",
           "AdaptiveLaplace", "HALO", "SharedHALO", "Horseshoe", "RegularizedHorseshoe", "SitePriors", "register_prior",
           "GroupLaplace", "GroupAdaptiveLaplace", "GroupHALO", "GroupHorseshoe",
           "BayesHaloError", "ConfigError", "DataUnavailableError", "CheckpointError", "DivergenceError",
           "__version__"]
