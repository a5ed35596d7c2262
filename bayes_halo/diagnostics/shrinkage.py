"""Per-weight posterior shrinkage diagnostics from posterior draws and the MAP values.

For each prunable weight ``w_j`` of a layer, from ``S`` draws ``w_j^(s)`` (SVI or NUTS):

* ``mean = (1/S) sum_s w_j^(s)``, ``sd`` with the ``1/(S-1)`` sample variance, ``shift = mean - w_map``;
* ``snr = |mean| / sd`` (signal-to-noise; ``inf`` if ``sd = 0 < |mean|``, 0 if both are 0);
* ``p_small = (1/S) #{s : |w_j^(s)| < eps_l}``, an estimate of ``P(|w_j| < eps_l | data)`` with
  Monte-Carlo sd at most ``0.5 / sqrt(S)``;
* for HALO / SharedHALO, the adaptive lasso coefficient ``c_j = xi / lambda_j^2`` per draw: its
  posterior mean, median and central ``level`` interval (sample quantiles, numpy's "linear" rule).

The threshold is relative by default: ``eps_l = eps * rms(w_map of layer l)`` with ``eps = 0.05``,
i.e. "below 5% of the layer's typical MAP weight".  An absolute threshold (``relative=False``)
would not be invariant to rescaling a layer: with ReLU, multiplying one layer by ``c > 0`` and
the next by ``1/c`` leaves the network unchanged but moves every weight across a fixed ``eps``;
the RMS (not the median) is the reference because in a sparse layer most MAP weights are ~0.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from ..priors import Prior, hyper_site_name


@dataclass(frozen=True)
class Coefficient:
    """Posterior summary of HALO's ``xi / lambda^2`` (shaped like ``lambda``: per weight, or a scalar if shared)."""

    mean: Tensor
    median: Tensor
    lower: Tensor
    upper: Tensor
    level: float


@dataclass(frozen=True)
class WeightShrinkage:
    """Diagnostics of one weight tensor; every tensor is shaped like the weight."""

    map_value: Tensor
    mean: Tensor
    sd: Tensor
    snr: Tensor
    p_small: Tensor
    eps: float  # the absolute threshold used for this layer
    num_draws: int
    coefficient: Coefficient | None = None

    @property
    def shift(self) -> Tensor:
        """``E[w | data] - w_map``."""
        return self.mean - self.map_value


def quantiles(draws: Tensor, probs: Sequence[float]) -> Tensor:
    """Sample quantiles along dim 0 (numpy's "linear" rule), ``(len(probs), *draws.shape[1:])``.

    Sorts once instead of ``torch.quantile``, which refuses inputs above 2^24 elements.
    """
    ordered = draws.sort(dim=0).values
    last = len(draws) - 1
    rows = []
    for p in probs:
        position = p * last
        below = math.floor(position)
        above = min(below + 1, last)
        rows.append(torch.lerp(ordered[below], ordered[above], position - below))
    return torch.stack(rows)


def weight_shrinkage(draws: Mapping[str, Tensor], map_values: Mapping[str, Tensor], sites: Sequence[str],
                     prior: Prior | None = None, eps: float = 0.05, relative: bool = True,
                     level: float = 0.9) -> dict[str, WeightShrinkage]:
    """Diagnostics of each weight tensor in ``sites`` from ``draws[site]`` of shape ``(S, *shape)``.

    ``map_values`` holds the MAP value of each site.  With a ``prior`` that has a learned coefficient (HALO: ``xi / lambda^2``) the
    draws of its hyper-variable give the coefficient summary.  ``eps`` is relative to the layer's MAP RMS
    unless ``relative=False``.
    """
    if not (eps > 0 and 0 < level < 1):
        raise ConfigError(f"need eps > 0 and 0 < level < 1, got eps={eps}, level={level}")
    result = {}
    for site in sites:
        w = draws[site]
        if len(w) < 2:
            raise ConfigError(f"need at least 2 posterior draws of {site!r}, got {len(w)}")
        w_map = map_values[site].detach().to(w.dtype)
        threshold = eps * w_map.pow(2).mean().sqrt().item() if relative else eps
        mean, sd = w.mean(0), w.std(0)
        coefficient = None
        if prior is not None and prior.coefficient_of is not None:
            coef = prior.at(site).coefficient(draws[hyper_site_name(site, prior.coefficient_of)])
            median, lower, upper = quantiles(coef, [0.5, (1 - level) / 2, (1 + level) / 2])
            coefficient = Coefficient(coef.mean(0), median, lower, upper, level)
        snr = torch.where(sd > 0, mean.abs() / sd, torch.where(mean != 0, math.inf, 0.0))
        result[site] = WeightShrinkage(map_value=w_map, mean=mean, sd=sd, snr=snr,
                                       p_small=(w.abs() < threshold).to(w.dtype).mean(0), eps=threshold,
                                       num_draws=len(w), coefficient=coefficient)
    return result


def layer_summary(shrinkage: Mapping[str, WeightShrinkage]) -> list[dict]:
    """One row per layer.

    Keys: ``layer``, ``n_weights``, ``eps``, ``mean_abs_map`` (mean ``|w_map|``), ``mean_abs_shift``
    (mean ``|E w - w_map|``), ``mean_sd``, ``median_snr``, ``mean_p_small``, ``expected_small``
    (``sum_j P(|w_j| < eps)``), ``median_coefficient`` (median over weights of the posterior median
    of ``xi / lambda^2``; ``None`` without HALO).  Medians over weights use :func:`quantiles`.
    """
    rows = []
    for layer, d in shrinkage.items():
        rows.append({
            "layer": layer,
            "n_weights": d.mean.numel(),
            "eps": d.eps,
            "mean_abs_map": d.map_value.abs().mean().item(),
            "mean_abs_shift": d.shift.abs().mean().item(),
            "mean_sd": d.sd.mean().item(),
            "median_snr": _median(d.snr),
            "mean_p_small": d.p_small.mean().item(),
            "expected_small": d.p_small.sum().item(),
            "median_coefficient": None if d.coefficient is None else _median(d.coefficient.median),
        })
    return rows


def _median(values: Tensor) -> float:
    return quantiles(values.reshape(-1), [0.5])[0].item()
