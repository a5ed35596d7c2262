"""The one place that knows which ArviZ line is installed: 1.x (Python >= 3.12) or 0.23.

ArviZ 1.x (arviz-base, arviz-stats, arviz-plots) holds a result as an :class:`xarray.DataTree`
whose children are the groups; 0.23 holds it as ``az.InferenceData``.  Everything else in the
package goes through these functions, which take and give plain xarray Datasets, pandas
DataFrames and matplotlib Figures, the same on both lines:

* :func:`build`, :func:`group_names`, :func:`group`: a result from ``{group: Dataset}`` and back;
* :func:`save`, :func:`load`: NetCDF-4 through h5netcdf, one group per NetCDF group, so a file
  written by either line opens in the other;
* :func:`summary` (``kind="stats"``: without the chain diagnostics), :func:`rhat`, :func:`ess`,
  :func:`hdi`: the diagnostics, with 1.x names
  (``hdi90_lb``/``hdi90_ub`` columns, a ``ci_bound`` dim with ``lower``/``upper``);
* :func:`plot_forest`, :func:`plot_trace`, :func:`plot_rank`: ArviZ's own plots as Figures.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

#: True where the installed ArviZ is the 1.x line (results are DataTrees)
ARVIZ_1 = int(version("arviz").split(".")[0]) >= 1
Result = Any  # xr.DataTree on ArviZ 1.x, az.InferenceData on 0.23
_ENGINE = "h5netcdf"


def build(groups: Mapping[str, xr.Dataset]) -> Result:
    """An ArviZ result whose groups are ``groups`` (``"posterior"``, ``"sample_stats"``, ...)."""
    if ARVIZ_1:
        return xr.DataTree.from_dict(dict(groups))
    return az.InferenceData(**groups)


def group_names(result: Result) -> list[str]:
    """The names of the result's groups, e.g. ``["posterior", "sample_stats"]``."""
    return list(result.children) if ARVIZ_1 else list(result.groups())


def group(result: Result, name: str) -> xr.Dataset:
    """One group as a Dataset (its attrs included)."""
    return result[name].to_dataset() if ARVIZ_1 else result[name]


def save(result: Result, path: str | Path) -> None:
    """Write ``result`` as NetCDF-4 (h5netcdf), each group a NetCDF group."""
    result.to_netcdf(path, engine=_ENGINE)


def load(path: str | Path) -> Result:
    """Read a NetCDF file written by :func:`save` on either ArviZ line, fully into memory."""
    if ARVIZ_1:
        with az.from_netcdf(path, engine=_ENGINE) as tree:  # closes the file once loaded
            return tree.load()
    return az.from_netcdf(path, engine=_ENGINE).map(lambda ds: ds.load())


def _dataset(value: Result | xr.Dataset) -> xr.Dataset:
    """A diagnostic's Dataset: 1.x returns a DataTree for a DataTree input."""
    return value.to_dataset() if ARVIZ_1 and isinstance(value, xr.DataTree) else value


def rhat(result: Result) -> xr.Dataset:
    """Rank-normalised split R-hat of every posterior variable (Vehtari et al. 2021)."""
    return _dataset(az.rhat(result))


def ess(result: Result, method: str = "bulk") -> xr.Dataset:
    """Effective sample size (``"bulk"`` or ``"tail"``) of every posterior variable."""
    return _dataset(az.ess(result, method=method))


def hdi(result: Result, prob: float) -> xr.Dataset:
    """Highest-density interval of every posterior variable, along a last dim ``ci_bound`` = lower, upper."""
    if ARVIZ_1:
        return _dataset(az.hdi(result, prob=prob))
    return az.hdi(result, hdi_prob=prob).rename(hdi="ci_bound").assign_coords(ci_bound=["lower", "upper"])


def summary(result: Result, var_names: Sequence[str] | None = None, prob: float = 0.9,
            kind: str = "all") -> pd.DataFrame:
    """Mean, sd and ``prob`` HDI per entry and, with ``kind="all"``, MCSE, bulk/tail ESS and R-hat, unrounded.

    Columns: ``mean, sd, hdi<P>_lb, hdi<P>_ub`` (``kind="stats"``, for independent draws such as
    SVI's: no chain diagnostics, no warning about a single chain) then ``mcse_mean, mcse_sd,
    ess_bulk, ess_tail, r_hat`` (``kind="all"``), with ``P = 100 prob`` (ArviZ 1.x's names; 0.23
    calls the interval ``hdi_<tail>%``).
    """
    if kind not in ("all", "stats"):
        raise ValueError(f"kind must be 'all' or 'stats', got {kind!r}")
    names = list(var_names) if var_names else None
    percent = f"{100 * prob:g}"
    columns = ["mean", "sd", f"hdi{percent}_lb", f"hdi{percent}_ub"]
    if kind == "all":
        columns += ["mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]
    if ARVIZ_1:
        table = az.summary(result, var_names=names, kind=kind, ci_kind="hdi", ci_prob=prob, round_to="none")
    else:
        table = az.summary(result, var_names=names, kind=kind, hdi_prob=prob, round_to="none")
        low, high = (f"hdi_{100 * q:g}%" for q in ((1 - prob) / 2, (1 + prob) / 2))
        table = table.rename(columns={low: columns[2], high: columns[3]})
    return table[columns].astype(float)


@contextmanager
def _plotting() -> Iterator[None]:
    """ArviZ 0.23's matplotlib backend calls an API that matplotlib 3.11 deprecates for it: not our warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
        yield


def _figure(plot: Any) -> Figure:
    """The matplotlib Figure behind an ArviZ plot's return value (a PlotCollection or axes)."""
    if ARVIZ_1:
        return plot.viz["figure"].item()
    return np.ravel(plot)[0].figure


def plot_forest(results: Mapping[str, Result], var_names: Sequence[str], prob: float = 0.9,
                coords: Mapping[str, Sequence] | None = None, figsize: tuple[float, float] = (8, 8)) -> Figure:
    """ArviZ's forest plot of ``var_names`` for one or more named results: mean and ``prob`` HDI, chains pooled
    (rows carry the results' names when there are several)."""
    names, selection = list(var_names), dict(coords or {})
    if ARVIZ_1:
        data = {label: result for label, result in results.items()}
        plot = az.plot_forest(data if len(data) > 1 else next(iter(data.values())), var_names=names,
                              coords=selection, combined=True, point_estimate="mean", ci_kind="hdi",
                              ci_probs=(0.5, prob), figure_kwargs={"figsize": figsize, "layout": "constrained"})
    else:
        with _plotting():
            data, several = list(results.values()), len(results) > 1
            plot = az.plot_forest(data if several else data[0], model_names=list(results) if several else None,
                                  var_names=names, coords=selection, combined=True, hdi_prob=prob, figsize=figsize)
    return _figure(plot)


def plot_trace(result: Result, var_names: Sequence[str], coords: Mapping[str, Sequence] | None = None,
               figsize: tuple[float, float] = (11, 6)) -> Figure:
    """Per variable: marginal density (left panel) and trace of every chain (right panel), entries overlaid."""
    names, selection = list(var_names), dict(coords or {})
    if ARVIZ_1:
        plot = az.plot_trace_dist(result, var_names=names, coords=selection, compact=True, kind="kde",
                                  figure_kwargs={"figsize": figsize, "layout": "constrained"})
    else:
        with _plotting():
            plot = az.plot_trace(result, var_names=names, coords=selection, compact=True, legend=bool(selection),
                                 figsize=figsize, backend_kwargs={"layout": "constrained"})
    fig = _figure(plot)
    for density, trace in zip(fig.axes[0::2], fig.axes[1::2]):
        density.set(xlabel="value", ylabel="density")
        trace.set(xlabel="draw", ylabel="value")
    return fig


def plot_rank(result: Result, var_names: Sequence[str], coords: Mapping[str, Sequence] | None = None,
              figsize: tuple[float, float] = (11, 6)) -> Figure:
    """Rank plot per entry: chains agree when their ranks are uniform (1.x: rank ECDFs; 0.23: rank bars)."""
    names, selection = list(var_names), dict(coords or {})
    if ARVIZ_1:
        plot = az.plot_rank(result, var_names=names, coords=selection,
                            figure_kwargs={"figsize": figsize, "layout": "constrained"})
        labels = {"xlabel": "fractional rank of draw (all chains pooled)", "ylabel": "rank ECDF - uniform, per chain"}
    else:
        with _plotting():
            plot = az.plot_rank(result, var_names=names, coords=selection, kind="bars",
                                figsize=figsize, backend_kwargs={"layout": "constrained"})
        labels = {"xlabel": "rank of draw (all chains pooled)", "ylabel": "chain"}
    fig = _figure(plot)
    for ax in fig.axes:
        ax.set(**labels)
    return fig
