r"""Marginal density ``p(w)`` of one weight under a prior, hyper-variables integrated out.

Strengths follow the package's per-example convention (see :mod:`bayes_halo.priors.base`):
a strength ``xi`` is the prior rate ``N xi``, so the densities depend on ``n_data``.

* Normal and Laplace: closed form.
* HALO: ``p(w) = int_0^inf Laplace(w; 0, lambda^2/(N xi)) Gamma(lambda; a, rate N psi) dlambda``,
  one ``scipy.integrate.quad`` (over ``log lambda``) per point.  With ``t = N psi lambda`` and
  ``c = N^3 xi psi^2 |w|``,
  ``p(w) = N xi (N psi)^2 / (2 Gamma(a)) * int_0^inf t^(a-3) exp(-c/t^2 - t) dt``; for the
  default ``a = 3`` the density is finite at zero, ``p(0) = N^3 xi psi^2 / 4``, and its tail follows
  ``-log p(w) ~ N * 3 * 2^(-2/3) xi^(1/3) psi^(2/3) |w|^(1/3)``, the profile penalty.
* Horseshoe: ``w ~ Normal(0, s)`` with ``s = tau lambda`` the product of two half-Cauchy
  variables (scales ``tau0`` and 1), whose density is
  ``4 / (pi^2 tau0) * log(s/tau0) / ((s/tau0)^2 - 1)``; one ``quad`` (over ``log s``) per point.
  The density is infinite at ``w = 0``.

Adaptive Laplace (one scale per weight, from a pilot), shared-scale HALO (weights of a tensor
are dependent through their common scale) and the regularised horseshoe (a triple integral) are
not covered.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy.integrate import quad
from scipy.optimize import brentq

from ..errors import ConfigError
from .base import Prior, check_strength
from .halo import HALO
from .horseshoe import Horseshoe, RegularizedHorseshoe
from .laplace import Laplace
from .normal import Normal

#: how far (in log density) each side of the peak the numerical integrals reach
_DROP = 60.0


def _expm1(x: float) -> float:
    """``e^x - 1``, saturating at ``e^700`` instead of overflowing."""
    return math.expm1(min(x, 700.0))


def _log_integral_unimodal(h_star: float, drop: Callable[[float], float], width: float) -> float:
    """``log int_R exp(h(u* + v)) dv`` for a concave ``h`` with its maximum ``h_star`` at ``u*``.

    ``drop(v) = h(u* + v) - h_star <= 0`` is passed in directly, written so that it keeps full
    precision near the peak even when ``h_star`` is large.  The integral runs on each side of
    the peak out to where ``drop`` reaches ``-_DROP`` (beyond which, ``h`` being concave, the
    rest is negligible), found by doubling a step that starts at ``width``, the peak's rough width.
    """
    def integrand(v: float) -> float:
        return math.exp(drop(v))

    total = 0.0
    for direction in (-1.0, 1.0):
        step = width
        while drop(direction * step) > -_DROP:
            step *= 2.0
        lo, hi = sorted((0.0, direction * step))
        total += quad(integrand, lo, hi, epsabs=0.0, epsrel=1e-10, limit=200)[0]
    return h_star + math.log(total)


def _halo_log_integral(c: float, concentration: float) -> float:
    r"""``log int_0^inf t^(a-3) exp(-c/t^2 - t) dt``, with ``a = concentration``.

    With ``t = e^u`` this is ``log int_R exp(h(u)) du``, ``h(u) = (a-2) u - c e^(-2u) - e^u``:
    concave, with a unique maximum where ``h'(u) = (a-2) + 2c e^(-2u) - e^u`` (strictly
    decreasing) vanishes.  Requires ``c > 0`` or ``a > 2`` (otherwise the integral diverges).
    """
    a2 = concentration - 2.0
    if c == 0.0:
        return math.lgamma(a2)
    log_c = math.log(c)

    def slope(u: float) -> float:
        return a2 + 2.0 * math.exp(min(log_c - 2.0 * u, 700.0)) - math.exp(u)

    # at t = e^u_hi = e (A + B + 1), A = max(a-2, 0), B = (2c)^(1/3): 2c/t^2 <= B/e^2, so
    # slope = (a-2) + 2c/t^2 - t <= A + B/e^2 - e (A + B + 1) < 0; slope -> +inf as u -> -inf
    u_hi = math.log(max(a2, 0.0) + (2.0 * c) ** (1.0 / 3.0) + 1.0) + 1.0
    u_lo = u_hi - 1.0
    while slope(u_lo) <= 0.0:
        u_lo -= 1.0
    u_star = brentq(slope, u_lo, u_hi, xtol=1e-14, rtol=1e-15)
    outer = math.exp(u_star)  # e^(u*); c e^(-2u*) is (e^(u*) - (a-2)) / 2 at the peak
    inner = 0.5 * (outer - a2)

    def drop(v: float) -> float:
        if abs(v) > 1.0:  # far from the peak: the definition, no cancellation to fear
            return a2 * v - inner * _expm1(-2.0 * v) - outer * _expm1(v)
        # near the peak: the same, rearranged so that no large terms cancel
        # ((e^(-2v) - 1)/2 + e^v - 1 = (1 - e^(-v))^2 (2 e^v + 1) / 2)
        return 0.5 * (a2 * (2.0 * v + math.expm1(-2.0 * v))
                      - outer * math.expm1(-v) ** 2 * (2.0 * math.exp(v) + 1.0))

    return _log_integral_unimodal(a2 * u_star - inner - outer, drop, (4.0 * inner + outer) ** -0.5)


def halo_marginal_density(w: ArrayLike, xi: float, psi: float, n_data: int,
                          concentration: float = 3.0, log: bool = False) -> np.ndarray:
    r"""Marginal density of one weight under :class:`~bayes_halo.priors.HALO` ``(xi, psi, concentration)``.

    ``p(w) = int_0^inf Laplace(w; 0, lambda^2/(N xi)) Gamma(lambda; a, rate N psi) dlambda`` by
    numerical integration (``xi``, ``psi`` per example, ``N = n_data``, ``a = concentration``).
    Returns an array shaped like ``w``; ``log=True`` returns ``log p(w)`` instead.  For
    ``a <= 2`` the density is infinite at ``w = 0``.
    """
    xi, psi = check_strength("xi", xi), check_strength("psi", psi)
    concentration = check_strength("concentration", concentration)
    n = float(check_strength("n_data", n_data))
    # p = N xi (N psi)^2 / (2 Gamma(a)) * int t^(a-3) exp(-c/t^2 - t) dt, c = N^3 xi psi^2 |w|
    log_front = math.log(n * xi) + 2.0 * math.log(n * psi) - math.log(2.0) - math.lgamma(concentration)
    c_per_w = n**3 * xi * psi**2

    def log_density(x: float) -> float:
        c = c_per_w * abs(x)
        if c == 0.0 and concentration <= 2.0:
            return math.inf
        return log_front + _halo_log_integral(c, concentration)

    out = np.vectorize(log_density, otypes=[float])(np.asarray(w, dtype=float))
    return out if log else np.exp(out)


def _log_u_over_expm1(u: float) -> float:
    """``log(u / (e^(2u) - 1))``, which is ``log(1/2)`` at ``u = 0``, without overflow."""
    if u > 0.0:
        return math.log(u) - 2.0 * u - math.log(-math.expm1(-2.0 * u))
    if u < 0.0:
        return math.log(-u) - math.log(-math.expm1(2.0 * u))
    return math.log(0.5)


def _d_log_u_over_expm1(u: float) -> float:
    """Derivative of :func:`_log_u_over_expm1`: ``1/u - 2/(1 - e^(-2u))``, always negative."""
    if abs(u) < 1e-3:  # series; the two terms cancel to -1 at u = 0
        return -1.0 - u / 3.0 + u**3 / 45.0
    return 1.0 / u + 2.0 / _expm1(-2.0 * u)


def _horseshoe_log_density_unit(x: float) -> float:
    r"""``log p(x)`` for ``tau0 = 1``: ``p(x) = int_0^inf Normal(x; 0, z) 4 log z / (pi^2 (z^2 - 1)) dz``.

    With ``z = e^u`` the integrand is ``4/(pi^2 sqrt(2 pi)) exp(h(u))``,
    ``h(u) = -x^2 e^(-2u)/2 + log(u / (e^(2u) - 1))``: concave, since the second derivative of
    the last term is ``1/sinh(u)^2 - 1/u^2 < 0``.  Its maximum lies a few units from
    ``u = log |x|``; its width is at least of order one.
    """
    if x == 0.0:
        return math.inf
    log_x2 = 2.0 * math.log(abs(x))

    def slope(u: float) -> float:
        return math.exp(min(log_x2 - 2.0 * u, 700.0)) + _d_log_u_over_expm1(u)

    u_lo, u_hi = 0.5 * log_x2 - 1.0, 0.5 * log_x2 + 1.0
    while slope(u_lo) <= 0.0:
        u_lo -= 1.0
    while slope(u_hi) >= 0.0:
        u_hi += 1.0
    u_star = brentq(slope, u_lo, u_hi, xtol=1e-12)
    gauss = 0.5 * math.exp(log_x2 - 2.0 * u_star)  # x^2 e^(-2u*) / 2
    tail = _log_u_over_expm1(u_star)

    def drop(v: float) -> float:
        return -gauss * _expm1(-2.0 * v) + _log_u_over_expm1(u_star + v) - tail

    log_front = math.log(4.0 / (math.pi**2 * math.sqrt(2.0 * math.pi)))
    return log_front + _log_integral_unimodal(tail - gauss, drop, 1.0)


def horseshoe_marginal_density(w: ArrayLike, tau0: float, log: bool = False) -> np.ndarray:
    r"""Marginal density of one weight under :class:`~bayes_halo.priors.Horseshoe` ``(tau0)``.

    ``w ~ Normal(0, tau lambda)`` with ``tau ~ HalfCauchy(tau0)``, ``lambda ~ HalfCauchy(1)``, both
    integrated out (numerically, over ``s = tau lambda``).  No ``n_data``: the horseshoe's scales
    are absolute.  Infinite at ``w = 0``.  Returns an array shaped like ``w``; ``log=True``
    returns ``log p(w)``.
    """
    tau0 = check_strength("tau0", tau0)
    unit = np.vectorize(_horseshoe_log_density_unit, otypes=[float])
    out = unit(np.asarray(w, dtype=float) / tau0) - math.log(tau0)
    return out if log else np.exp(out)


def marginal_density(prior: Prior, w: ArrayLike, n_data: int, log: bool = False) -> np.ndarray:
    r"""Marginal density ``p(w)`` of one weight under ``prior``, hyper-variables integrated out.

    Supports :class:`~bayes_halo.priors.Normal` (``Normal(0, (N xi)^(-1/2))``),
    :class:`~bayes_halo.priors.Laplace` (``Laplace(0, 1/(N xi))``),
    :class:`~bayes_halo.priors.HALO` (:func:`halo_marginal_density`) and
    :class:`~bayes_halo.priors.Horseshoe` (:func:`horseshoe_marginal_density`); raises
    :class:`~bayes_halo.errors.ConfigError` for any other prior.  ``n_data`` is ``N``.
    Returns an array shaped like ``w``; ``log=True`` returns ``log p(w)``.
    """
    x = np.asarray(w, dtype=float)
    n = float(check_strength("n_data", n_data))
    if isinstance(prior, Normal):
        precision = n * prior.xi
        out = 0.5 * math.log(precision / (2.0 * math.pi)) - 0.5 * precision * x**2
    elif isinstance(prior, Laplace):
        rate = n * prior.xi
        out = math.log(rate / 2.0) - rate * np.abs(x)
    elif isinstance(prior, HALO):
        out = halo_marginal_density(x, prior.xi, prior.psi, n_data, prior.concentration, log=True)
    elif isinstance(prior, Horseshoe) and not isinstance(prior, RegularizedHorseshoe):
        out = horseshoe_marginal_density(x, prior.tau0, log=True)
    else:
        raise ConfigError(f"no marginal density for {type(prior).__name__}; supported: "
                          "Normal, Laplace, HALO, Horseshoe")
    return out if log else np.exp(out)


__all__ = ["halo_marginal_density", "horseshoe_marginal_density", "marginal_density"]
