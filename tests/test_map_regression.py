"""Pyro MAP on real scikit-learn data against scikit-learn's own solvers."""
import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression
from torch import nn

from bayes_halo.inference.map import fit_map
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.models.likelihoods import Bernoulli
from bayes_halo.models.likelihoods import Normal as NormalLikelihood
from bayes_halo.priors import HALO, AdaptiveLaplace, Laplace, Normal


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    return X, y


def linear_map(X, y, prior, steps=2000, lr=0.05):
    module = BayesianModule(nn.Linear(X.shape[1], 1), prior, n_data=len(y), likelihood=NormalLikelihood(1.0))
    fit_map(module, torch.tensor(X), torch.tensor(y), steps=steps, lr=lr)
    return module


def test_laplace_map_is_sklearn_lasso(diabetes, float64):
    """Lasso(alpha) minimises ||y - Xw - b||^2/(2n) + alpha ||w||_1: Laplace prior with xi = alpha, sigma = 1."""
    X, y = diabetes
    alpha = 0.05
    reference = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X, y)
    module = linear_map(X, y, Laplace(alpha))
    np.testing.assert_allclose(module.net.weight.detach().numpy().ravel(), reference.coef_, atol=2e-4)
    assert module.net.bias.item() == pytest.approx(reference.intercept_, abs=2e-4)
    assert (reference.coef_ == 0).sum() >= 3  # the comparison includes exact zeros


def test_adaptive_laplace_map_is_reweighted_sklearn_lasso(diabetes, float64):
    """Zou's adaptive lasso = a plain Lasso on columns X_j / omega_j, coefficients divided by omega_j."""
    X, y = diabetes
    alpha, gamma = 0.02, 1.0
    pilot = LinearRegression().fit(X, y).coef_
    omega = 1.0 / np.abs(pilot) ** gamma
    scaled = Lasso(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X / omega, y)
    reference = scaled.coef_ / omega
    prior = AdaptiveLaplace.from_pilot(alpha, {"weight": torch.tensor(pilot)[None, :]}, gamma=gamma, eps=1e-300)
    module = linear_map(X, y, prior, steps=3000)
    np.testing.assert_allclose(module.net.weight.detach().numpy().ravel(), reference, atol=3e-4)
    assert (reference == 0).sum() >= 1


def test_ridge_map_is_closed_form(diabetes, float64):
    """Normal prior with per-example xi: (X'X/n + xi I) w = X'y/n on centred data."""
    X, y = diabetes
    xi = 0.3
    n = len(y)
    closed = np.linalg.solve(X.T @ X / n + xi * np.eye(X.shape[1]), X.T @ y / n)
    module = linear_map(X, y, Normal(xi))
    np.testing.assert_allclose(module.net.weight.detach().numpy().ravel(), closed, atol=1e-5)


def test_logistic_map_with_ridge_is_sklearn(float64):
    """L2-penalised logistic regression: sklearn's C equals 1 / (n * xi)."""
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    xi = 0.01
    reference = LogisticRegression(C=1.0 / (len(y) * xi), tol=1e-10, max_iter=10_000).fit(X, y)
    module = BayesianModule(nn.Linear(X.shape[1], 1), Normal(xi), n_data=len(y), likelihood=Bernoulli())
    fit_map(module, torch.tensor(X), torch.tensor(y, dtype=torch.float64), steps=2000, lr=0.05)
    np.testing.assert_allclose(module.net.weight.detach().numpy().ravel(), reference.coef_.ravel(), atol=1e-4)


def test_exponential_hyperprior_collapses_but_gamma3_does_not(diabetes, float64):
    """With Gamma(1) the Laplace normaliser survives: -log p is unbounded below at (w=0, lambda->0).

    Closed form first, then a fit: the Gamma(1) loss keeps falling the longer it trains and
    almost every weight collapses, while the Gamma(3) fit converges to a finite optimum.
    """
    xi, psi, n = 1e-2, 1e-2, 40
    zero = torch.zeros(1)
    for t_big, t_small in [(1e-2, 1e-6)]:
        at = {a: [n * HALO(xi, psi, concentration=a).penalty("w", zero, {"lambda": torch.tensor([t])}, n).item()
                  for t in (t_big, t_small)] for a in (1.0, 3.0)}
    assert at[1.0][1] < at[1.0][0] - 2 * 9  # drops by 2 log(1e4) ~ 18.4
    assert min(at[3.0]) >= 0.0

    X, y = diabetes
    X, y = X[:n], y[:n]
    losses, alive = {}, {}
    for a in (1.0, 3.0):
        for steps in (1000, 3000):
            module = BayesianModule(nn.Linear(X.shape[1], 1), HALO(xi, psi, concentration=a), n_data=n,
                                    likelihood=NormalLikelihood(1.0))
            losses[a, steps] = fit_map(module, torch.tensor(X), torch.tensor(y), steps=steps, lr=0.05).final_loss
            alive[a] = int((module.net.weight.abs() > 1e-3).sum())
    assert losses[1.0, 3000] < losses[1.0, 1000] - 3.0  # no finite minimum: still falling
    assert abs(losses[3.0, 3000] - losses[3.0, 1000]) < 0.5  # converged
    assert alive[1.0] <= 2 and alive[3.0] >= 5
