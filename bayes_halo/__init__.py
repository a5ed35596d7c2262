"""bayes_halo: sparsity penalties as Bayesian hierarchical priors (HALO and friends) in Pyro.

The main objects:

* :mod:`bayes_halo.priors`: Normal, Laplace, AdaptiveLaplace, HALO, SharedHALO, Horseshoe,
  RegularizedHorseshoe; each a Pyro fragment with a matching closed-form penalty.
* :class:`BayesianModule`: a prior on the prunable weights of any ``torch.nn.Module``, with a fast
  torch objective and a Pyro model that are the same estimator.
* :func:`fit_map`: MAP through Pyro (``AutoDelta``) for small models.
"""
from __future__ import annotations

from .threads import entry_point_threading

entry_point_threading()  # python -m bayes_halo.fit/path/export: a bounded OpenMP spin, set before torch loads

from importlib.metadata import PackageNotFoundError, version

from .errors import BayesHaloError, CheckpointError, ConfigError, DataUnavailableError, DivergenceError
from .inference.map import MAPResult, fit_map
from .models.bayesian import BayesianModule
from .priors import (HALO, PRIORS, AdaptiveLaplace, Horseshoe, Laplace, Normal, Prior,
                     RegularizedHorseshoe, SharedHALO)

try:
    __version__ = version("bayes_halo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["BayesianModule", "fit_map", "MAPResult", "Prior", "PRIORS", "Normal", "Laplace",
           "AdaptiveLaplace", "HALO", "SharedHALO", "Horseshoe", "RegularizedHorseshoe",
           "BayesHaloError", "ConfigError", "DataUnavailableError", "CheckpointError", "DivergenceError",
           "__version__"]
