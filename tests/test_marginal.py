"""Marginal densities of one weight, each against a computation that shares no code with it."""
import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from scipy import stats
from scipy.integrate import dblquad, quad

from bayes_halo.errors import ConfigError
from bayes_halo.priors import (HALO, AdaptiveLaplace, Horseshoe, Laplace, Normal, RegularizedHorseshoe,
                               SharedHALO)
from bayes_halo.priors.marginal import halo_marginal_density, horseshoe_marginal_density, marginal_density

N = 1000
DRAWS = 200_000


def total_mass(density, split: float = 1.0) -> float:
    """``int_R density`` for a density symmetric about zero (split at 0 and ``split``)."""
    f = lambda x: float(density(x))  # noqa: E731
    return 2 * (quad(f, 0, split, limit=500)[0] + quad(f, split, np.inf, limit=500)[0])


def prior_draws(prior, n_data: int) -> np.ndarray:
    """``DRAWS`` independent weights from the prior's Pyro fragment, each with its own hyper-variables."""
    with pyro.plate("draws", DRAWS):
        trace = poutine.trace(prior.sample).get_trace("w", torch.zeros(()), n_data)
    return trace.nodes["w"]["value"].double().numpy()


def assert_bins_match(draws: np.ndarray, density, edges: list[float]) -> None:
    """P(lo < |w| < hi) from the density agrees with the draws within 5 binomial sd per bin."""
    f = lambda x: float(density(x))  # noqa: E731
    magnitude = np.abs(draws)
    for lo, hi in zip(edges[:-1], edges[1:]):
        expected = 2 * quad(f, lo, hi, limit=500)[0]
        observed = np.mean((magnitude > lo) & (magnitude < hi))
        tolerance = 5 * math.sqrt(expected * (1 - expected) / len(draws))
        assert abs(observed - expected) < tolerance, (lo, hi, observed, expected)


def test_normal_and_laplace_are_the_scipy_densities():
    w = np.linspace(-0.3, 0.3, 13)
    xi = 2e-2
    np.testing.assert_allclose(marginal_density(Normal(xi), w, N),
                               stats.norm(scale=(N * xi) ** -0.5).pdf(w), rtol=1e-12)
    np.testing.assert_allclose(marginal_density(Laplace(xi), w, N, log=True),
                               stats.laplace(scale=1 / (N * xi)).logpdf(w), rtol=1e-12)


@pytest.mark.parametrize("xi,psi,n_data,concentration",
                         [(1e-3, 1e-3, 1000, 3.0), (2e-4, 5e-3, 500, 3.0), (1e-3, 1e-3, 1000, 1.0),
                          (1e-3, 1e-3, 1000, 2.5), (1e-3, 1e-3, 1000, 5.0)])
def test_halo_density_integrates_to_one(xi, psi, n_data, concentration):
    density = lambda x: halo_marginal_density(x, xi, psi, n_data, concentration)  # noqa: E731
    assert total_mass(density) == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("w", [1e-3, 0.07, 0.8, 4.0])
@pytest.mark.parametrize("concentration", [3.0, 1.5])
def test_halo_density_is_the_integral_over_lambda_of_its_definition(w, concentration):
    xi, psi = 1e-3, 2e-3
    laplace_times_gamma = lambda lam: (stats.laplace(scale=lam**2 / (N * xi)).pdf(w)  # noqa: E731
                                       * stats.gamma(concentration, scale=1 / (N * psi)).pdf(lam))
    expected = quad(laplace_times_gamma, 0, np.inf, limit=500, epsabs=0, epsrel=1e-10)[0]
    assert halo_marginal_density(w, xi, psi, N, concentration) == pytest.approx(expected, rel=1e-6)


def test_halo_density_at_zero():
    xi, psi = 1e-3, 2e-3
    assert halo_marginal_density(0.0, xi, psi, N) == pytest.approx(N**3 * xi * psi**2 / 4, rel=1e-12)
    # general concentration a > 2: N xi (N psi)^2 Gamma(a - 2) / (2 Gamma(a))
    expected = N * xi * (N * psi) ** 2 * math.gamma(3.0) / (2 * math.gamma(5.0))
    assert halo_marginal_density(0.0, xi, psi, N, concentration=5.0) == pytest.approx(expected, rel=1e-12)
    assert halo_marginal_density(0.0, xi, psi, N, concentration=2.0) == np.inf


@pytest.mark.parametrize("w", [1e2, 1e4, 1e8, 1e30])
def test_halo_tail_is_the_profile_penalty_up_to_the_saddle_point_correction(w):
    """Laplace's method on ``int exp(-c/t^2 - t) dt`` around ``t* = (2c)^(1/3)``, ``c = N^3 xi psi^2 |w|``."""
    xi, psi = 1e-3, 1e-3
    c = N**3 * xi * psi**2 * w
    t_star = (2 * c) ** (1 / 3)
    profile = 3 * 2 ** (-2 / 3) * xi ** (1 / 3) * psi ** (2 / 3) * w ** (1 / 3)
    saddle = math.log(N**3 * xi * psi**2 / 4) - N * profile + 0.5 * math.log(2 * math.pi * t_star / 3)
    rounding = 1e-13 * abs(saddle)  # float64 resolution of a log density near -2e10 (at w = 1e30)
    assert abs(halo_marginal_density(w, xi, psi, N, log=True) - saddle) < 0.5 / t_star + rounding


def test_halo_density_matches_draws_from_the_pyro_fragment():
    xi, psi = 1e-3, 1e-3
    draws = prior_draws(HALO(xi, psi), N)
    assert_bins_match(draws, lambda x: halo_marginal_density(x, xi, psi, N),
                      [0.0, 0.01, 0.1, 0.5, 1.0, 3.0, 10.0, 50.0, np.inf])


@pytest.mark.parametrize("tau0", [1.0, 0.05])
def test_horseshoe_density_integrates_to_one(tau0):
    density = lambda x: horseshoe_marginal_density(x, tau0)  # noqa: E731
    assert total_mass(density, split=tau0) == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("w", [1e-3, 0.3, 5.0])
def test_horseshoe_density_is_the_double_integral_over_tau_and_lambda(w):
    """``int int Normal(w; 0, tau lambda) HalfCauchy(tau; tau0) HalfCauchy(lambda; 1)``, over log scales."""
    tau0 = 0.3

    def integrand(log_lam: float, log_tau: float) -> float:
        tau, lam = math.exp(log_tau), math.exp(log_lam)
        scale = tau * lam
        normal = math.exp(-0.5 * (w / scale) ** 2) / (math.sqrt(2 * math.pi) * scale)
        half_cauchy_tau = 2 / (math.pi * tau0 * (1 + (tau / tau0) ** 2))
        half_cauchy_lam = 2 / (math.pi * (1 + lam**2))
        return normal * half_cauchy_tau * tau * half_cauchy_lam * lam

    expected = dblquad(integrand, -30, 30, -30, 30, epsabs=0, epsrel=1e-8)[0]
    assert horseshoe_marginal_density(w, tau0) == pytest.approx(expected, rel=1e-6)


def test_horseshoe_density_is_infinite_at_zero_and_matches_draws_from_the_pyro_fragment():
    tau0 = 0.5
    assert horseshoe_marginal_density(0.0, tau0) == np.inf
    draws = prior_draws(Horseshoe(tau0), N)
    assert_bins_match(draws, lambda x: horseshoe_marginal_density(x, tau0),
                      [1e-3, 0.01, 0.1, 0.5, 1.0, 3.0, 30.0, np.inf])


def test_extreme_weights_give_finite_log_densities():
    w = np.array([1e-300, 1e-12, 1e30, 1e300])
    for log_p in (halo_marginal_density(w, 1e-3, 1e-3, N, log=True),
                  halo_marginal_density(w, 1e-3, 1e-3, N, concentration=1.0, log=True),
                  horseshoe_marginal_density(w, 1.0, log=True)):
        assert np.all(np.isfinite(log_p))
        assert np.all(np.diff(log_p) < 0)


def test_marginal_density_dispatches_and_keeps_the_shape():
    w = np.linspace(-2, 2, 12).reshape(3, 4)
    np.testing.assert_array_equal(marginal_density(HALO(1e-3, 2e-3, concentration=4.0), w, N),
                                  halo_marginal_density(w, 1e-3, 2e-3, N, concentration=4.0))
    np.testing.assert_array_equal(marginal_density(Horseshoe(0.2), w, N, log=True),
                                  horseshoe_marginal_density(w, 0.2, log=True))
    assert marginal_density(Normal(1e-3), 0.5, N).shape == ()


@pytest.mark.parametrize("prior", [SharedHALO(1e-3, 1e-3), RegularizedHorseshoe(0.5),
                                   AdaptiveLaplace(1e-3, {"w": torch.ones(3)})], ids=lambda p: p.name)
def test_priors_without_a_marginal_are_refused(prior):
    with pytest.raises(ConfigError, match="no marginal density"):
        marginal_density(prior, 0.1, N)


def test_bad_strengths_are_refused():
    with pytest.raises(ConfigError):
        halo_marginal_density(0.1, -1e-3, 1e-3, N)
    with pytest.raises(ConfigError):
        horseshoe_marginal_density(0.1, 0.0)
    with pytest.raises(ConfigError):
        marginal_density(Laplace(1e-3), 0.1, 0)
