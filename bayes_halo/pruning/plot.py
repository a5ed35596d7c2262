"""Accuracy (or another metric) against keep fraction, one line per pruning criterion."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter


def plot_accuracy_vs_keep(rows: Iterable[Mapping], dense_accuracy: float | None = None,
                          metric: str = "test_accuracy", title: str | None = None) -> Figure:
    """Test ``metric`` against the fraction of weights kept (log axis) for each criterion.

    ``rows`` are ``metrics.json``'s ``pruned`` rows (``keep``, ``criterion``, ``metric``); a
    dashed line marks the dense network.  Accuracies are shown in %, other metrics as they are.
    """
    scale = 100 if metric.endswith("accuracy") else 1
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        lines[row["criterion"]].append((row["keep"], scale * row[metric]))
    figure = Figure(figsize=(6.4, 4.2))
    ax = figure.subplots()
    for criterion, points in sorted(lines.items()):
        points.sort()
        ax.plot([k for k, _ in points], [a for _, a in points], marker="o", label=criterion)
    if dense_accuracy is not None:
        ax.axhline(scale * dense_accuracy, color="grey", linestyle="--", label="dense (no pruning)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda k, _: f"{100 * k:g}%"))
    ax.set_xlabel("weights kept (one-shot, no fine-tuning unless named)")
    ax.set_ylabel(metric.replace("_", " ") + (" (%)" if scale == 100 else ""))
    ax.set_title(title or "Accuracy after pruning")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    figure.tight_layout()
    return figure
