"""Observation models: the mean negative log-likelihood for the fast path, and the Pyro site.

For each likelihood, ``N * mean_nll(out, y)`` on a full data set equals ``-log p(y | out)``
exactly (constants included), so the fast objective and the Pyro model differ by no constant
from the likelihood.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import pyro
import pyro.distributions as dist
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError


class Likelihood(ABC):
    """``p(y | out)`` for a batch of network outputs ``out``."""

    @abstractmethod
    def mean_nll(self, out: Tensor, y: Tensor) -> Tensor:
        """``-(1/B) sum_i log p(y_i | out_i)`` over a batch of ``B`` examples."""

    @abstractmethod
    def distribution(self, out: Tensor) -> dist.Distribution:
        """The Pyro distribution of ``y``, batch shape ``(B,)``."""

    def observe(self, out: Tensor, y: Tensor | None) -> Tensor:
        """Pyro fragment: the site ``"obs"`` (call inside the data plate)."""
        return pyro.sample("obs", self.distribution(out), obs=y)


class Categorical(Likelihood):
    """Classification from logits ``out[B, K]``: ``mean_nll`` is the mean cross-entropy."""

    def mean_nll(self, out: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(out, y)

    def distribution(self, out: Tensor) -> dist.Distribution:
        return dist.Categorical(logits=out)


class Bernoulli(Likelihood):
    """Binary classification from one logit per example (``out[B]`` or ``out[B, 1]``)."""

    def mean_nll(self, out: Tensor, y: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(_flat(out), y.to(out.dtype))

    def distribution(self, out: Tensor) -> dist.Distribution:
        return dist.Bernoulli(logits=_flat(out))


class Normal(Likelihood):
    """Regression with known noise ``sigma``: ``y_i ~ Normal(out_i, sigma)``.

    ``mean_nll = mean((y - out)^2) / (2 sigma^2) + log sigma + log(2 pi)/2``.  With
    ``sigma = 1`` the data term is scikit-learn's Lasso loss ``||y - X w||^2 / (2n)``, so a
    Laplace prior with per-example ``xi`` is ``Lasso(alpha=xi)``.
    """

    def __init__(self, sigma: float = 1.0) -> None:
        if not (math.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"noise sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def mean_nll(self, out: Tensor, y: Tensor) -> Tensor:
        resid = y - _flat(out)
        return resid.pow(2).mean() / (2 * self.sigma**2) + math.log(self.sigma) + 0.5 * math.log(2 * math.pi)

    def distribution(self, out: Tensor) -> dist.Distribution:
        return dist.Normal(_flat(out), self.sigma)


def _flat(out: Tensor) -> Tensor:
    """Drop a trailing output dimension of size 1: ``[B, 1] -> [B]``."""
    return out.squeeze(-1) if out.dim() > 1 and out.shape[-1] == 1 else out
