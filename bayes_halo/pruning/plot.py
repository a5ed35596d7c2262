"""Accuracy (or another metric) against keep fraction, one line per pruning criterion."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

#: per line: marker, line style (cycled), so equal accuracies stay visible as distinct shapes
STYLES = (("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--"))
#: sideways shift between neighbouring lines at one keep fraction, as a factor on the log axis
DODGE = 1.04


def keep_label(keep: float) -> str:
    """``0.01`` -> ``"1%"``, ``0.005`` -> ``"0.5%"``."""
    return f"{100 * keep:g}%"


def plot_accuracy_vs_keep(rows: Iterable[Mapping], dense_accuracy: float | None = None,
                          metric: str = "test_accuracy", title: str | None = None) -> Figure:
    """Test ``metric`` (accuracies in %) against the fraction of weights kept (log axis, every fraction labelled), one line
    per criterion; lines are drawn with their own marker and style and dodged slightly sideways
    (``DODGE``) so that none hides another.

    ``rows`` are ``metrics.json``'s ``pruned`` rows (``keep``, ``criterion``, ``metric``); a
    dashed line marks the dense network.  Accuracies are shown in %, other metrics as they are.
    """
    scale = 100 if metric.endswith("accuracy") else 1
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        lines[row["criterion"]].append((row["keep"], scale * row[metric]))
    figure = Figure(figsize=(6.4, 4.2))
    ax = figure.subplots()
    names = sorted(lines)
    for index, criterion in enumerate(names):
        points = sorted(lines[criterion])
        marker, style = STYLES[index % len(STYLES)]
        shift = DODGE ** (index - (len(names) - 1) / 2)
        ax.plot([k * shift for k, _ in points], [a for _, a in points], marker=marker, linestyle=style,
                markersize=7, markerfacecolor="none", markeredgewidth=1.5, label=criterion)
    if dense_accuracy is not None:
        ax.axhline(scale * dense_accuracy, color="grey", linestyle="--", label="dense (no pruning)")
    keeps = sorted({k for points in lines.values() for k, _ in points})
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(keeps))
    ax.xaxis.set_major_formatter(lambda k, _: keep_label(k))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if keeps:
        ax.set_xlim(keeps[0] / 1.4, keeps[-1] * 1.4)
    ax.set_xlabel("weights kept (log scale; one-shot, no fine-tuning unless named)")
    ax.set_ylabel(metric.replace("_", " ") + (" (%)" if scale == 100 else ""))
    ax.set_title(title or "Accuracy after pruning")
    ax.grid(True, alpha=0.3)
    ax.legend()
    figure.tight_layout()
    return figure
