"""Shrinkage diagnostics as PNG figures (matplotlib, headless-safe).

Every function returns the :class:`~matplotlib.figure.Figure` and, given ``path``, also writes it
as a PNG atomically.  Figures are built without pyplot (no global state, any backend), except the
MCMC panels, which ArviZ draws through pyplot; those are detached from pyplot before returning.
Draws are plain ``{site: array (S, *shape)}`` dicts from any source (MAP, SVI, NUTS).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from ..atomic import save_figure
from ..errors import ConfigError
from ..pruning import plot as pruning_plot
from . import arviz_compat
from .arviz_compat import Result

ArrayLike = Tensor | np.ndarray
#: colours per method label, so MAP, SVI and NUTS look the same in every figure
METHOD_COLOURS = {"MAP": "black", "SVI": "tab:orange", "NUTS": "tab:blue"}


def _np(value: ArrayLike) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        save_figure(path, fig)
    return fig


def _colour(method: str, index: int) -> str:
    return METHOD_COLOURS.get(method, f"C{index + 2}")


def _forest(ax: Axes, labels: Sequence[str], draws: Mapping[str, np.ndarray], reference: np.ndarray | None,
            prob: float, reference_label: str = "MAP") -> None:
    """Rows ``labels``; per method a dot at the mean and an error bar with caps over the central ``prob``
    interval (the caps stay visible when the interval is narrower than the dot).

    ``draws[method]`` is ``(S, len(labels))``; ``reference`` (e.g. the MAP) is marked with a cross.
    """
    rows = np.arange(len(labels))
    offsets = np.linspace(-0.2, 0.2, len(draws)) if len(draws) > 1 else [0.0]
    tail = (1 - prob) / 2
    for i, ((method, d), off) in enumerate(zip(draws.items(), offsets)):
        lo, hi = np.quantile(d, [tail, 1 - tail], axis=0)
        mean = d.mean(0)
        ax.errorbar(mean, rows + off, xerr=[np.maximum(mean - lo, 0), np.maximum(hi - mean, 0)], fmt="o", ms=4,
                    capsize=4, lw=2, color=_colour(method, i), label=f"{method}: mean and {prob:.0%} interval")
    if reference is not None:
        ax.plot(reference, rows, "x", color="black", ms=7, mew=1.5, label=reference_label)
    ax.set_yticks(rows, labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first label on top
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="best")


def plot_coefficient_forest(draws: Mapping[str, ArrayLike], labels: Sequence[str], map_value: ArrayLike | None = None,
                            prob: float = 0.9, title: str = "Coefficients", ax: Axes | None = None,
                            path: str | Path | None = None, reference_label: str = "MAP") -> Figure:
    """Forest plot of one weight tensor's entries: ``draws[method]`` is ``(S, *shape)``, one row per entry.

    ``map_value`` (crosses, legend ``reference_label``) may be any reference, e.g. the true coefficients.
    """
    flat = {m: _np(d).reshape(len(d), -1) for m, d in draws.items()}
    sizes = {d.shape[1] for d in flat.values()}
    if sizes != {len(labels)}:
        raise ConfigError(f"{len(labels)} labels for draws with {sorted(sizes)} entries")
    if ax is None:
        fig = Figure(figsize=(6, 0.3 * len(labels) + 1.5), layout="constrained")
        ax = fig.subplots()
    _forest(ax, labels, flat, None if map_value is None else _np(map_value).ravel(), prob, reference_label)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("coefficient value")
    ax.set_ylabel("coefficient")
    ax.set_title(title)
    return _finish(ax.figure, path)


def plot_layer_shrinkage(draws: Mapping[str, Mapping[str, ArrayLike]],
                         map_values: Mapping[str, ArrayLike] | None = None, prob: float = 0.9,
                         path: str | Path | None = None) -> Figure:
    """Per-layer forest plot of ``m = mean_j |w_j|``: its posterior (mean, ``prob`` interval) per method.

    ``draws[method][site]`` is ``(S, *shape)``; the MAP's ``m`` is a cross.  A posterior left of
    the cross means the posterior shrinks that layer more than the MAP does, right of it less.
    """
    sites = list(next(iter(draws.values())))
    per_layer = {m: np.stack([np.abs(_np(d[s])).reshape(len(d[s]), -1).mean(1) for s in sites], axis=1)
                 for m, d in draws.items()}
    reference = None if map_values is None else np.array([np.abs(_np(map_values[s])).mean() for s in sites])
    fig = Figure(figsize=(6.5, 0.45 * len(sites) + 1.8), layout="constrained")
    ax = fig.subplots()
    _forest(ax, sites, per_layer, reference, prob)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_minor_formatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else "")
    ax.set_xlabel("mean |w| over the layer's weights (log scale)")
    ax.set_ylabel("layer")
    ax.set_title("Per-layer shrinkage: posterior of mean |w| vs MAP")
    return _finish(fig, path)


def plot_map_vs_posterior(map_values: Mapping[str, ArrayLike], posterior_mean: Mapping[str, ArrayLike],
                          mask: Mapping[str, ArrayLike], path: str | Path | None = None) -> Figure:
    """Scatter of every weight's MAP value against its posterior mean, coloured by ``mask`` (True = kept)."""
    sites = list(map_values)
    x = np.concatenate([_np(map_values[s]).ravel() for s in sites])
    y = np.concatenate([_np(posterior_mean[s]).ravel() for s in sites])
    kept = np.concatenate([_np(mask[s]).ravel().astype(bool) for s in sites])
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    size = 12 if len(x) < 2000 else 3
    ax.scatter(x[~kept], y[~kept], s=size, c="tab:red", alpha=0.6, label=f"pruned ({(~kept).sum()})", rasterized=True)
    ax.scatter(x[kept], y[kept], s=size, c="tab:blue", alpha=0.6, label=f"kept ({kept.sum()})", rasterized=True)
    bound = float(np.abs(np.concatenate([x, y])).max()) * 1.05 or 1.0
    ax.plot([-bound, bound], [-bound, bound], color="grey", lw=0.8, ls="--", label="posterior mean = MAP")
    ax.set_xlim(-bound, bound)
    ax.set_ylim(-bound, bound)
    ax.set_xlabel("MAP value of w_j")
    ax.set_ylabel("posterior mean of w_j")
    ax.set_title("MAP vs posterior mean, by pruning decision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _finish(fig, path)


def plot_hyper_histograms(values: Mapping[str, ArrayLike], xlabel: str = "lambda", bins: int = 40,
                          path: str | Path | None = None) -> Figure:
    """Per-layer histograms of positive values (e.g. HALO's ``lambda_j`` or ``xi / lambda_j^2``) on a log x-axis
    when they span a factor of 10 or more, else on a linear one (plain tick labels either way).

    Each layer's histogram is normalised to the fraction of its entries, so layers of different
    sizes compare.
    """
    flat = {site: _np(v).ravel() for site, v in values.items()}
    everything = np.concatenate(list(flat.values()))
    if (everything <= 0).any() or not np.isfinite(everything).all():
        raise ConfigError(f"{xlabel} must be positive and finite to plot on a log axis")
    lo, hi = everything.min(), everything.max()
    wide = hi >= 10 * lo
    edges = np.geomspace(lo, hi if hi > lo else lo * 1.01, bins + 1)
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.subplots()
    for site, v in flat.items():
        ax.hist(v, bins=edges, weights=np.full(len(v), 1 / len(v)), histtype="step", lw=1.5, label=site)
    if wide:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ax.set_xlabel(f"{xlabel} (log scale)" if wide else xlabel)
    ax.set_ylabel("fraction of the layer's weights")
    ax.set_title(f"{xlabel} per layer")
    ax.legend(fontsize="small")
    return _finish(fig, path)


def plot_accuracy_vs_keep(rows: Iterable[Mapping], path: str | Path | None = None, **options) -> Figure:
    """Accuracy against keep fraction, one line per criterion: :func:`bayes_halo.pruning.plot.plot_accuracy_vs_keep`
    (rows with ``keep``, ``criterion``, ``test_accuracy``; ``options``: ``dense_accuracy``, ``metric``, ``title``)."""
    return _finish(pruning_plot.plot_accuracy_vs_keep(rows, **options), path)


def plot_posterior_forest(result: Result, var_name: str, prob: float = 0.9, max_rows: int = 48,
                          path: str | Path | None = None) -> Figure:
    """ArviZ's forest plot of one variable of a posterior (e.g. one layer's weights in ``posterior.nc``):
    mean and ``prob`` HDI per entry, at most about ``max_rows`` entries (evenly spaced along each dim,
    first and last included), the figure's height sized to the rows drawn."""
    import matplotlib.pyplot as plt

    posterior = arviz_compat.group(result, "posterior")
    if var_name not in posterior:
        raise ConfigError(f"{var_name!r} is not in the posterior group; it holds {', '.join(posterior.data_vars)}")
    dims = [d for d in posterior[var_name].dims if d not in ("chain", "draw")]
    per_dim = max(1, int(max_rows ** (1 / len(dims)))) if dims else 1
    coords = {d: posterior[d].values[np.unique(np.linspace(0, posterior.sizes[d] - 1, per_dim).round().astype(int))]
              for d in dims if posterior.sizes[d] > per_dim}
    rows = int(np.prod([len(coords[d]) if d in coords else posterior.sizes[d] for d in dims]))
    method = str(posterior.attrs.get("inference", "posterior")).upper()
    fig = arviz_compat.plot_forest({method: result}, [var_name], prob, coords=coords,
                                   figsize=(6.5, 0.28 * rows + 1.6))
    shown = f"{rows} evenly spaced entries" if coords else "every stored entry"
    fig.suptitle(f"{var_name}: {method} posterior, mean and {prob:.0%} HDI, {shown}", fontsize=10)
    plt.close(fig)
    return _finish(fig, path)


def plot_mcmc(idata: Result, var_names: Sequence[str], kind: Literal["trace", "rank"] = "trace",
              coords: Mapping[str, Sequence] | None = None, path: str | Path | None = None) -> Figure:
    """ArviZ trace plot (density and trace per variable) or rank plot of MCMC ``var_names``.

    ``coords`` selects entries, e.g. ``{"in": ["bmi", "s5"]}``.  ArviZ draws through pyplot; the
    figure is detached from pyplot before it is returned.
    """
    import matplotlib.pyplot as plt

    names, selection = list(var_names), dict(coords or {})
    height = 2.6 * len(names) + 0.6
    if kind == "trace":
        fig = arviz_compat.plot_trace(idata, names, selection, figsize=(11, height))
        note = "colours: entries of each variable; line styles: chains"
    elif kind == "rank":
        fig = arviz_compat.plot_rank(idata, names, selection, figsize=(11, height))
        note = "uniform ranks = chains agree"
    else:
        raise ConfigError(f"kind must be 'trace' or 'rank', got {kind!r}")
    fig.suptitle(f"NUTS {kind} plot ({note})")
    plt.close(fig)
    return _finish(fig, path)
