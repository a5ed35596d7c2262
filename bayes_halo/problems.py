"""Small Bayesian models on real scikit-learn data, small enough for NUTS.

Each builder returns a :class:`Problem`: standardised float64 tensors (every feature scaled to
mean 0, sd 1 with the training statistics), a likelihood, and :meth:`Problem.module`, which puts a
prior on a fresh network.  The priors' strengths stay per example (see
:mod:`bayes_halo.priors.base`): ``N = len(problem.y)``.

* :func:`diabetes_regression`: ``y = X w + b + e``, ``e ~ Normal(0, sigma)`` on the 442 diabetes
  patients (10 features, standardised response).  ``sigma`` is *known*: by default it is fixed
  at the OLS residual sd ``sqrt(RSS / (n - p - 1))`` (a plug-in, so every posterior here is
  conditional on it).  With a Normal prior the posterior of ``(w, b)`` is then exactly Gaussian.
* :func:`breast_cancer_logistic`: ``y ~ Bernoulli(sigmoid(X w + b))`` on 569 tumours (30 features).
* :func:`digits_mlp`: a 64-``hidden``-10 tanh network on ``n_train`` standardised 8x8 digits,
  categorical likelihood, with the held-out test images for accuracy.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from .errors import ConfigError
from .models.bayesian import BayesianModule
from .models.likelihoods import Bernoulli, Categorical, Likelihood
from .models.likelihoods import Normal as NormalLikelihood
from .priors import Prior


@dataclass(frozen=True)
class Problem:
    """A data set, its likelihood and a network factory; ``x_test``/``y_test`` may be ``None``."""

    name: str
    x: Tensor
    y: Tensor
    likelihood: Likelihood
    make_net: Callable[[], nn.Module]
    feature_names: tuple[str, ...]
    x_test: Tensor | None = None
    y_test: Tensor | None = None

    @property
    def n_data(self) -> int:
        """``N``, the number of training examples."""
        return len(self.y)

    def module(self, prior: Prior | None, seed: int = 0) -> BayesianModule:
        """A fresh BayesianModule (network initialised from ``seed``) with ``prior`` on its weights."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = self.make_net()
        return BayesianModule(net, prior, n_data=self.n_data, likelihood=self.likelihood)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[Tensor]:
    """Scale columns to mean 0, sd 1 with the statistics of ``train`` (constant columns: sd 1)."""
    mean, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [torch.as_tensor((a - mean) / sd, dtype=torch.float64) for a in (train, *others)]


def _linear(n_features: int) -> Callable[[], nn.Module]:
    return lambda: nn.Linear(n_features, 1, dtype=torch.float64)


def ols_residual_sd(x: Tensor, y: Tensor) -> float:
    """``sqrt(RSS / (n - p - 1))`` of the least-squares fit of ``y`` on ``x`` with an intercept."""
    n, p = x.shape
    if n <= p + 1:
        raise ConfigError(f"OLS residual sd needs more examples ({n}) than coefficients ({p + 1})")
    design = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)
    coef = torch.linalg.lstsq(design, y[:, None]).solution
    rss = (y - (design @ coef).squeeze(1)).pow(2).sum()
    return float((rss / (n - p - 1)).sqrt())


def diabetes_regression(sigma: float | Literal["ols"] = "ols") -> Problem:
    """Sparse linear regression on scikit-learn's diabetes data, noise sd ``sigma`` known.

    ``sigma="ols"`` fixes it at :func:`ols_residual_sd` (about 0.70 on the standardised response).
    """
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    x, = _standardise(data.data)
    y, = _standardise(data.target[:, None])
    y = y.squeeze(1)
    noise = ols_residual_sd(x, y) if sigma == "ols" else float(sigma)
    return Problem("diabetes", x, y, NormalLikelihood(noise), _linear(x.shape[1]), tuple(data.feature_names))


def breast_cancer_logistic() -> Problem:
    """Sparse logistic regression on scikit-learn's breast-cancer data (1 = benign)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x, = _standardise(data.data)
    y = torch.as_tensor(data.target, dtype=torch.float64)
    return Problem("breast-cancer", x, y, Bernoulli(), _linear(x.shape[1]), tuple(data.feature_names))


def digits_mlp(n_train: int = 300, hidden: int = 8) -> Problem:
    """A 64-``hidden``-10 tanh MLP on the first ``n_train`` training digits (stratified 80/20 split).

    Layers are named ``fc1`` and ``fc2``, so the prior sites are ``"fc1.weight"``, ``"fc2.weight"``.
    """
    from ..data.digits import load_digits_tensors

    split = load_digits_tensors()
    if not 0 < n_train <= len(split.y_train):
        raise ConfigError(f"n_train={n_train} must be in 1..{len(split.y_train)}")
    if hidden < 1:
        raise ConfigError(f"hidden={hidden} must be a positive number of units")
    x, x_test = _standardise(split.x_train[:n_train].flatten(1).numpy(), split.x_test.flatten(1).numpy())

    def make_net() -> nn.Module:
        return nn.Sequential(OrderedDict(fc1=nn.Linear(64, hidden, dtype=torch.float64), act=nn.Tanh(),
                                         fc2=nn.Linear(hidden, 10, dtype=torch.float64)))

    return Problem("digits", x, split.y_train[:n_train], Categorical(), make_net,
                   tuple(f"pixel_{i}" for i in range(64)), x_test, split.y_test)
