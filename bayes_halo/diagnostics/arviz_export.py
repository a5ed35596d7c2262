"""ArviZ results from MAP estimates, SVI draws and MCMC chains, saved as NetCDF (``posterior.nc``).

Everything takes plain ``{site: draws}`` dicts (tensors or arrays), so any source works.  The
result is built by :mod:`.arviz_compat` (an ``xarray.DataTree`` on ArviZ 1.x, ``InferenceData``
on 0.23); this module only decides what goes into which group.

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
  draws from an approximation; their "ESS" says nothing about its error), and
  :func:`posterior_summary` gives them for MCMC only.
* ``observed_data`` holds ``obs`` (the Pyro site name) along ``obs_id``.
* Reduced mode (``keep_draws`` and/or ``max_entries`` given, for large networks): ``posterior``
  keeps every draw of the sites in ``keep_draws`` in full and, of every other site, the entries
  at :func:`entry_selection`'s indices (at most ``max_entries`` per site, evenly spaced along each
  dim, their coords the original indices; ``max_entries=0`` drops the other sites).  The group
  ``posterior_summary`` holds the ``mean``, ``sd``, ``q05`` and ``q95`` of every entry of every
  site along the dim ``statistic``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from torch import Tensor, nn

from ..atomic import atomic_path
from ..errors import ConfigError
from ..models.bayesian import BayesianModule
from ..priors import hyper_site_name
from . import arviz_compat
from .arviz_compat import Result

ArrayLike = Tensor | np.ndarray
Dims = Mapping[str, Sequence[str]]
Coords = Mapping[str, Sequence]

#: the statistics of the ``posterior_summary`` group, in order
SUMMARY_STATISTICS = ("mean", "sd", "q05", "q95")
_AXES = {nn.Linear: ("out", "in"), nn.Conv1d: ("out", "in", "k"), nn.Conv2d: ("out", "in", "kh", "kw"),
         nn.Conv3d: ("out", "in", "kd", "kh", "kw")}


def site_dims(module: BayesianModule) -> dict[str, list[str]]:
    """Dim names of every latent site of ``module.model`` that belongs to a Linear/Conv layer or a grouping.

    A grouping ``site`` has dims ``<site>_group`` and ``<site>_entry``; its ``[G]`` hyper-variables
    and the group-level variables ``<site>_norm`` and ``<site>_small`` share ``<site>_group``.
    """
    layers = dict(module.net.named_modules())
    dims: dict[str, list[str]] = {}
    for name, param in module.net.named_parameters():
        layer_name, _, kind = name.rpartition(".")
        axes = _AXES.get(type(layers[layer_name]))
        if axes is None:
            continue
        prefix = f"{layer_name}_" if layer_name else ""
        dims[name] = [prefix + a for a in (axes if kind == "weight" else axes[:1])][:param.dim()]
    for site in module.groupings:
        dims[site] = [f"{site}_group", f"{site}_entry"]
        dims.update({f"{site}_{suffix}": [f"{site}_group"] for suffix in ("norm", "small")})
    shapes = {name: v.shape for name, v in module.site_values().items()}
    for site in module.sites:
        for hyper in module.hyper(site):
            hyper_name = hyper_site_name(site, hyper)
            if site in dims and shapes[hyper_name] == shapes[site]:
                dims[hyper_name] = dims[site]
            elif site in module.groupings and shapes[hyper_name] == shapes[site][:1]:
                dims[hyper_name] = dims[site][:1]
    return dims


def _numpy(value: ArrayLike) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def _dim_names(name: str, ndim: int, dims: Dims) -> list[str]:
    """The dims of a site with ``ndim`` axes: given in ``dims``, else ``<site>_dim_<i>``."""
    return list(dims.get(name, [f"{name}_dim_{i}" for i in range(ndim)]))


def _dataset(values: Mapping[str, np.ndarray], lead: Sequence[str], dims: Dims, coords: Coords) -> xr.Dataset:
    """A Dataset of ``values`` whose first axes are ``lead`` and the rest named by ``dims``."""
    variables, all_coords = {}, {}
    for name, value in values.items():
        names = _dim_names(name, value.ndim - len(lead), dims)
        if len(names) != value.ndim - len(lead):
            raise ConfigError(f"dims {names} do not match site {name!r} of shape {value.shape[len(lead):]}")
        full = [*lead, *names]
        variables[name] = (full, value)
        for dim, size in zip(full, value.shape):
            all_coords.setdefault(dim, list(coords[dim]) if dim in coords else np.arange(size))
    return xr.Dataset(variables, coords=all_coords)


def _summary(draws: Mapping[str, np.ndarray], dims: Dims, coords: Coords) -> xr.Dataset:
    """Mean, sd, 5% and 95% quantiles over the (chain, draw) axes of every site, in the draws' dtype."""
    stats = {}
    for name, d in draws.items():
        flat = d.reshape(-1, *d.shape[2:])
        q05, q95 = np.quantile(flat, [0.05, 0.95], axis=0)
        sd = flat.std(0, ddof=1) if len(flat) > 1 else np.zeros_like(q05)
        stats[name] = np.stack([flat.mean(0), sd, q05, q95]).astype(flat.dtype, copy=False)  # the draws' precision
    return _dataset(stats, ["statistic"], dims, {**coords, "statistic": list(SUMMARY_STATISTICS)})


def _spread(size: int, count: int) -> np.ndarray:
    """``count`` distinct indices in ``0..size-1``, evenly spaced, first and last included."""
    return np.round(np.linspace(0, size - 1, count)).astype(int) if count > 1 else np.zeros(1, dtype=int)


def entry_selection(shapes: Mapping[str, Sequence[int]], dims: Dims, full: Iterable[str],
                    max_entries: int) -> dict[str, np.ndarray]:
    """Indices to keep along each dim: every index of a dim of a ``full`` site, else at most ``max_entries`` per site.

    ``shapes[site]`` is the site's shape (no chain/draw axes).  Sites are visited largest first; a
    dim already chosen (by a full site or a larger site sharing it, e.g. a weight's lambda) is
    kept as chosen, and the free dims, smallest first, get ``k_d = min(n_d, floor(B^(1/r)))``
    entries with ``B`` the budget left and ``r`` the free dims left, so ``prod_d k_d <= max_entries``
    whenever the chosen dims leave room.
    """
    chosen: dict[str, np.ndarray] = {}
    named = {site: dict(zip(_dim_names(site, len(shape), dims), shape)) for site, shape in shapes.items()}
    for site in full:
        chosen.update({dim: np.arange(size) for dim, size in named[site].items()})
    for site in sorted(set(named) - set(full), key=lambda s: -math.prod(named[s].values())):
        budget = max_entries
        for dim in named[site]:
            if dim in chosen:
                budget //= len(chosen[dim])
        free = sorted((d for d in named[site] if d not in chosen), key=named[site].get)
        for left, dim in zip(range(len(free), 0, -1), free):
            count = min(named[site][dim], max(1, int(budget ** (1 / left) + 1e-9)))
            chosen[dim] = _spread(named[site][dim], count)
            budget //= count
    return chosen


def _inference_data(draws: Mapping[str, ArrayLike], method: str, sample_stats: xr.Dataset | None,
                    dims: Dims | None, coords: Coords | None, observed: ArrayLike | None,
                    keep_draws: Iterable[str] | None, max_entries: int | None) -> Result:
    """An ArviZ result from draws shaped ``(chain, draw, *site_shape)``; reduced mode as in the module doc."""
    dims, coords = dict(dims or {}), dict(coords or {})
    arrays = {name: _numpy(d) for name, d in draws.items()}
    groups: dict[str, xr.Dataset] = {}
    selection: dict[str, np.ndarray] = {}
    if keep_draws is not None or max_entries is not None:
        full = list(keep_draws or ())
        unknown = set(full) - set(arrays)
        if unknown:
            raise ConfigError(f"keep_draws names unknown site(s) {sorted(unknown)}; sites are {sorted(arrays)}")
        if max_entries is not None and max_entries < 0:
            raise ConfigError(f"max_entries must be >= 0, got {max_entries}")
        groups["posterior_summary"] = _summary(arrays, dims, coords)
        if not max_entries:
            arrays = {name: arrays[name] for name in full}
        selection = entry_selection({name: a.shape[2:] for name, a in arrays.items()}, dims, full, max_entries or 0)
    posterior = _dataset(arrays, ["chain", "draw"], dims, coords).isel(selection)
    if not arrays:  # keep_draws=[]: the chain/draw coords still say how many draws were summarised
        first = next(iter(draws.values()))
        posterior = posterior.assign_coords(chain=np.arange(first.shape[0]), draw=np.arange(first.shape[1]))
    posterior.attrs["inference"] = method
    groups["posterior"] = posterior
    if sample_stats is not None:
        groups["sample_stats"] = sample_stats
    if observed is not None:
        groups["observed_data"] = xr.Dataset({"obs": (["obs_id"], _numpy(observed))})
    return arviz_compat.build(groups)


def map_inference_data(values: Mapping[str, ArrayLike], *, dims: Dims | None = None,
                       coords: Coords | None = None, observed: ArrayLike | None = None) -> Result:
    """A MAP estimate (e.g. ``MAPResult.values``) as a posterior with one chain and one draw."""
    draws = {name: _numpy(v)[None, None] for name, v in values.items()}
    return _inference_data(draws, "map", None, dims, coords, observed, None, None)


def svi_inference_data(draws: Mapping[str, ArrayLike], losses: Sequence[float], *, dims: Dims | None = None,
                       coords: Coords | None = None, observed: ArrayLike | None = None,
                       keep_draws: Iterable[str] | None = None, max_entries: int | None = None) -> Result:
    """Independent draws ``(S, *shape)`` from an SVI guide as one chain of ``S`` draws.

    ``sample_stats.loss`` is the -ELBO per optimisation step, along its own dim ``svi_step``.
    """
    chained = {name: _numpy(d)[None] for name, d in draws.items()}
    stats = xr.Dataset({"loss": (["svi_step"], np.asarray(losses, dtype=float))},
                       coords={"svi_step": np.arange(len(losses))})
    return _inference_data(chained, "svi", stats, dims, coords, observed, keep_draws, max_entries)


def mcmc_inference_data(draws: Mapping[str, ArrayLike], *, diverging: ArrayLike | None = None,
                        step_size: ArrayLike | None = None, dims: Dims | None = None, coords: Coords | None = None,
                        observed: ArrayLike | None = None, keep_draws: Iterable[str] | None = None,
                        max_entries: int | None = None) -> Result:
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
    return _inference_data(draws, "mcmc", sample_stats, dims, coords, observed, keep_draws, max_entries)


def mcmc_summary(idata: Result, var_names: Sequence[str] | None = None, prob: float = 0.9) -> pd.DataFrame:
    """Mean, sd, ``prob`` highest-density interval, MCSE, bulk/tail ESS and rank-normalised R-hat per entry.

    Columns as :func:`.arviz_compat.summary`.  Only for MCMC draws: raises ConfigError for MAP or SVI posteriors.
    """
    method = arviz_compat.group(idata, "posterior").attrs.get("inference")
    if method != "mcmc":
        raise ConfigError(f"R-hat and ESS are defined for MCMC chains, not for a {method!r} posterior; "
                          "use posterior_summary (or az.summary(result, kind='stats')) for its means and intervals")
    return arviz_compat.summary(idata, var_names, prob)


def posterior_summary(idata: Result, var_names: Sequence[str] | None = None, prob: float = 0.9) -> pd.DataFrame:
    """Mean, sd and ``prob`` highest-density interval per entry, for any posterior (``posterior.nc``).

    MCMC chains also get MCSE, ESS and R-hat (as :func:`mcmc_summary`); MAP and SVI draws do not:
    those diagnostics are defined for Markov chains only.
    """
    method = arviz_compat.group(idata, "posterior").attrs.get("inference")
    return arviz_compat.summary(idata, var_names, prob, kind="all" if method == "mcmc" else "stats")


def save_inference_data(idata: Result, path: str | Path) -> Path:
    """Write ``idata`` as NetCDF-4 (h5netcdf) atomically: a temporary file beside ``path``, then rename."""
    with atomic_path(path) as tmp:
        arviz_compat.save(idata, tmp)
    return Path(path)


def load_inference_data(path: str | Path) -> Result:
    """Read ``posterior.nc`` (written by either ArviZ line) into memory."""
    return arviz_compat.load(path)
