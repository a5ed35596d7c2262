"""ArviZ ``InferenceData`` from MAP estimates, SVI draws and MCMC chains, saved as NetCDF.

Everything takes plain ``{site: draws}`` dicts (tensors or arrays), so any source works.

Conventions
-----------
* Variables are named by Pyro site (``"fc1.weight"``, ``"fc1.weight_lambda"``).  Dots are legal
  in NetCDF-4 names and survive a round trip through the h5netcdf engine unchanged.
* Dims: :func:`site_dims` names a Linear weight's axes ``<layer>_out, <layer>_in`` (a convolution
  adds ``<layer>_kh, <layer>_kw``), its bias ``<layer>_out``, and gives a hyper-variable shaped
  like its weight the weight's dims; a bare ``nn.Linear`` (layer name ``""``) uses ``out, in``.
  Any site without dims gets ``<site>_dim_<i>``.  Dims without given coords get ``0..n-1``.
* ``posterior.attrs["inference"]`` is ``"map"``, ``"svi"`` or ``"mcmc"``.  R-hat and ESS are only
  defined for MCMC chains: :func:`mcmc_summary` refuses anything else (SVI draws are independent
  draws from an approximation; their "ESS" says nothing about its error).
* ``observed_data`` holds ``obs`` (the Pyro site name) along ``obs_id``.
* Summaries-only mode (``keep_draws=[...]``, for large networks): ``posterior`` keeps the draws
  of the listed sites only, and the group ``posterior_summary`` holds, for every site, its
  ``mean``, ``sd``, ``q05`` and ``q95`` along the dim ``statistic``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from torch import Tensor, nn

from ..atomic import atomic_path
from ..errors import ConfigError
from ..models.bayesian import BayesianModule
from ..priors import hyper_site_name

ArrayLike = Tensor | np.ndarray
Dims = Mapping[str, Sequence[str]]
Coords = Mapping[str, Sequence]

#: the statistics of the ``posterior_summary`` group, in order
SUMMARY_STATISTICS = ("mean", "sd", "q05", "q95")
_AXES = {nn.Linear: ("out", "in"), nn.Conv1d: ("out", "in", "k"), nn.Conv2d: ("out", "in", "kh", "kw"),
         nn.Conv3d: ("out", "in", "kd", "kh", "kw")}


def site_dims(module: BayesianModule) -> dict[str, list[str]]:
    """Dim names of every latent site of ``module.model`` that belongs to a Linear/Conv layer."""
    layers = dict(module.net.named_modules())
    dims: dict[str, list[str]] = {}
    for name, param in module.net.named_parameters():
        layer_name, _, kind = name.rpartition(".")
        axes = _AXES.get(type(layers[layer_name]))
        if axes is None:
            continue
        prefix = f"{layer_name}_" if layer_name else ""
        dims[name] = [prefix + a for a in (axes if kind == "weight" else axes[:1])][:param.dim()]
    shapes = {name: v.shape for name, v in module.site_values().items()}
    for site in module.sites:
        for hyper in module.hyper(site):
            hyper_name = hyper_site_name(site, hyper)
            if site in dims and shapes[hyper_name] == shapes[site]:
                dims[hyper_name] = dims[site]
    return dims


def _numpy(value: ArrayLike) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def _dataset(values: Mapping[str, np.ndarray], lead: Sequence[str], dims: Dims, coords: Coords) -> xr.Dataset:
    """A Dataset of ``values`` whose first axes are ``lead`` and the rest named by ``dims``."""
    variables, all_coords = {}, {}
    for name, value in values.items():
        names = list(dims.get(name, [f"{name}_dim_{i}" for i in range(value.ndim - len(lead))]))
        if len(names) != value.ndim - len(lead):
            raise ConfigError(f"dims {names} do not match site {name!r} of shape {value.shape[len(lead):]}")
        full = [*lead, *names]
        variables[name] = (full, value)
        for dim, size in zip(full, value.shape):
            all_coords.setdefault(dim, list(coords[dim]) if dim in coords else np.arange(size))
    return xr.Dataset(variables, coords=all_coords)


def _summary(draws: Mapping[str, np.ndarray], dims: Dims, coords: Coords) -> xr.Dataset:
    """Mean, sd, 5% and 95% quantiles over the (chain, draw) axes of every site."""
    stats = {}
    for name, d in draws.items():
        flat = d.reshape(-1, *d.shape[2:])
        q05, q95 = np.quantile(flat, [0.05, 0.95], axis=0)
        stats[name] = np.stack([flat.mean(0), flat.std(0, ddof=1) if len(flat) > 1 else np.zeros_like(q05), q05, q95])
    return _dataset(stats, ["statistic"], dims, {**coords, "statistic": list(SUMMARY_STATISTICS)})


def _inference_data(draws: Mapping[str, ArrayLike], method: str, sample_stats: xr.Dataset | None,
                    dims: Dims | None, coords: Coords | None, observed: ArrayLike | None,
                    keep_draws: Iterable[str] | None) -> az.InferenceData:
    """InferenceData from draws shaped ``(chain, draw, *site_shape)``."""
    dims, coords = dict(dims or {}), dict(coords or {})
    arrays = {name: _numpy(d) for name, d in draws.items()}
    groups: dict[str, xr.Dataset] = {}
    if keep_draws is not None:
        keep = list(keep_draws)
        unknown = set(keep) - set(arrays)
        if unknown:
            raise ConfigError(f"keep_draws names unknown site(s) {sorted(unknown)}; sites are {sorted(arrays)}")
        groups["posterior_summary"] = _summary(arrays, dims, coords)
        arrays = {name: arrays[name] for name in keep}
    posterior = _dataset(arrays, ["chain", "draw"], dims, coords)
    if not arrays:  # keep_draws=[]: the chain/draw coords still say how many draws were summarised
        first = next(iter(draws.values()))
        posterior = posterior.assign_coords(chain=np.arange(first.shape[0]), draw=np.arange(first.shape[1]))
    posterior.attrs["inference"] = method
    groups["posterior"] = posterior
    if sample_stats is not None:
        groups["sample_stats"] = sample_stats
    if observed is not None:
        groups["observed_data"] = xr.Dataset({"obs": (["obs_id"], _numpy(observed))})
    return az.InferenceData(**groups)


def map_inference_data(values: Mapping[str, ArrayLike], *, dims: Dims | None = None,
                       coords: Coords | None = None, observed: ArrayLike | None = None) -> az.InferenceData:
    """A MAP estimate (e.g. ``MAPResult.values``) as a posterior with one chain and one draw."""
    draws = {name: _numpy(v)[None, None] for name, v in values.items()}
    return _inference_data(draws, "map", None, dims, coords, observed, None)


def svi_inference_data(draws: Mapping[str, ArrayLike], losses: Sequence[float], *, dims: Dims | None = None,
                       coords: Coords | None = None, observed: ArrayLike | None = None,
                       keep_draws: Iterable[str] | None = None) -> az.InferenceData:
    """Independent draws ``(S, *shape)`` from an SVI guide as one chain of ``S`` draws.

    ``sample_stats.loss`` is the -ELBO per optimisation step, along its own dim ``svi_step``.
    """
    chained = {name: _numpy(d)[None] for name, d in draws.items()}
    stats = xr.Dataset({"loss": (["svi_step"], np.asarray(losses, dtype=float))},
                       coords={"svi_step": np.arange(len(losses))})
    return _inference_data(chained, "svi", stats, dims, coords, observed, keep_draws)


def mcmc_inference_data(draws: Mapping[str, ArrayLike], *, diverging: ArrayLike | None = None,
                        step_size: ArrayLike | None = None, dims: Dims | None = None, coords: Coords | None = None,
                        observed: ArrayLike | None = None,
                        keep_draws: Iterable[str] | None = None) -> az.InferenceData:
    """MCMC draws ``(chains, draws, *shape)``, e.g. ``NUTSResult.draws``.

    ``sample_stats`` holds ``diverging`` (bool per draw) and ``step_size`` (per chain, repeated
    over draws as ArviZ expects) when given.
    """
    first = _numpy(next(iter(draws.values())))
    chains, count = first.shape[:2]
    stats = {}
    if diverging is not None:
        stats["diverging"] = (["chain", "draw"], _numpy(diverging).astype(bool).reshape(chains, count))
    if step_size is not None:
        stats["step_size"] = (["chain", "draw"], np.repeat(_numpy(step_size).reshape(chains, 1), count, axis=1))
    sample_stats = xr.Dataset(stats, coords={"chain": np.arange(chains), "draw": np.arange(count)}) if stats else None
    return _inference_data(draws, "mcmc", sample_stats, dims, coords, observed, keep_draws)


def mcmc_summary(idata: az.InferenceData, var_names: Sequence[str] | None = None,
                 prob: float = 0.9) -> pd.DataFrame:
    """``az.summary``: mean, sd, ``prob`` highest-density interval, MCSE, bulk/tail ESS and rank-normalised R-hat.

    Only for MCMC draws: raises ConfigError for MAP or SVI posteriors.
    """
    method = idata.posterior.attrs.get("inference")
    if method != "mcmc":
        raise ConfigError(f"R-hat and ESS are defined for MCMC chains, not for a {method!r} posterior; "
                          "use az.summary(idata, kind='stats') for its means and intervals")
    return az.summary(idata, var_names=list(var_names) if var_names else None, hdi_prob=prob)


def save_inference_data(idata: az.InferenceData, path: str | Path) -> Path:
    """Write ``idata`` as NetCDF (h5netcdf engine) atomically: a temporary file beside ``path``, then rename."""
    with atomic_path(path) as tmp:
        idata.to_netcdf(tmp, engine="h5netcdf")
    return Path(path)
