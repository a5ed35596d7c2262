"""The console summary printed at the end of ``python -m bayes_halo.fit``."""
from __future__ import annotations

from typing import Any


def _pct(value: float) -> str:
    return "   n/a" if value != value else f"{100 * value:6.2f}%"


def _bits(value: float) -> str:
    return "   n/a" if value != value else f"{value:7.4f}"


def format_metrics(metrics: dict[str, Any]) -> str:
    """A readable table of the dense and pruned accuracies (or bits per character) in ``metrics``."""
    metric = metrics.get("metric", "accuracy")
    show = _pct if metric == "accuracy" else _bits
    val, test = f"val_{metric}", f"test_{metric}"
    strengths = ", ".join(f"{k}={metrics[k]:g}" for k in ("xi", "psi") if metrics.get(k) is not None)
    groups = metrics.get("groups", "weight")
    prior = metrics["prior"] if groups == "weight" else f"{metrics['prior']} ({groups} groups)"
    lines = [f"{prior} prior ({strengths or 'no penalty'}) | {metrics['model']} on {metrics['dataset']} | "
             f"{metrics['epochs']} epochs | seed {metrics['seed']} | {metrics['train_seconds']:.1f} s training",
             f"dense network ({metric.replace('_', ' ')}): val {show(metrics['dense'][val])}   "
             f"test {show(metrics['dense'][test])}",
             "",
             f"{'keep':>7}  {'criterion':<20} {'kept / total weights':>22}  {'val':>7}  {'test':>7}"]
    for row in sorted(metrics["pruned"], key=lambda r: (-r["keep"], r["criterion"])):
        kept = f"{row['kept_weights']:,} / {row['total_weights']:,}"
        lines.append(f"{100 * row['keep']:6.2f}%  {row['criterion']:<20} {kept:>22}  "
                     f"{show(row[val])}  {show(row[test])}")
    scope = metrics["pruned"][0]["scope"] if metrics["pruned"] else "all"
    by = metrics["pruned"][0]["by"] if metrics["pruned"] else "global"
    lines.append(f"(one-shot {by} pruning of {'conv' if scope == 'conv' else 'all Linear/Conv'} weights, "
                 f"biases excluded; {metric.replace('_', ' ')} of the end-of-training model)")
    return "\n".join(lines)
