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
from pyro import poutine
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


class SequenceCategorical(Likelihood):
    """Next-token prediction from logits ``out[B, T, V]`` of labels ``y[B, T]``: every position is one observation.

    ``mean_nll = (1/(B T)) sum_{i,t} -log softmax(out_it)[y_it]``, so with ``N`` = the number of
    predicted tokens, ``N * mean_nll`` over the data set is ``-log p(y | out)``.  The Pyro site is one
    ``Categorical(...).to_event(1)`` per sequence, scaled by ``1/T``: the data plate over ``N`` tokens
    with a batch of ``B`` sequences weighs the batch's log-likelihood by ``(N / B) / T``.
    """

    def mean_nll(self, out: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    def distribution(self, out: Tensor) -> dist.Distribution:
        return dist.Categorical(logits=out).to_event(1)

    def observe(self, out: Tensor, y: Tensor | None) -> Tensor:
        with poutine.scale(scale=1.0 / out.shape[1]):
            return pyro.sample("obs", self.distribution(out), obs=y)


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
