"""Turn a study's results.csv into table.md and accuracy_vs_keep.png.

For every method, pruning criterion and keep fraction, the grid point with the best MEAN
VALIDATION accuracy across seeds is chosen (only grid points run with every seed compete);
its TEST error is reported as mean ± sd (sample sd over seeds).  The test set plays no part in
any choice.

    python experiments/pruning_study/report.py experiments/pruning_study/configs/lenet300.json
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayes_halo.atomic import save_figure, write_text

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
STRENGTHS = ("xi", "psi", "finetune_lr")


@dataclass
class Cell:
    """The chosen grid point of one (method, criterion, keep): its strengths and scores."""

    point: dict[str, str]
    val: float
    errors: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.errors)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.errors) if len(self.errors) > 1 else float("nan")


def criteria(spec: dict[str, Any]) -> list[str]:
    """The pruning criteria a method is reported under (default: magnitude)."""
    return spec.get("criteria", ["magnitude"])


def label(method: str, spec: dict[str, Any], criterion: str) -> str:
    """Row label: the method's label, plus the criterion when it is not plain magnitude."""
    name = spec.get("label", method)
    return name if criterion in ("magnitude", "magnitude+finetune") else f"{name}, {criterion} criterion"


def choose(rows: list[dict[str, str]], method: str, criterion: str, keep: float, n_seeds: int) -> Cell | None:
    """The grid point with the best mean validation accuracy (complete seed sets only)."""
    groups: dict[tuple[str, ...], list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        if r["method"] == method and r["criterion"] == criterion and float(r["keep"]) == keep:
            groups[tuple(r[k] for k in STRENGTHS)].append(r)
    complete = {k: g for k, g in groups.items() if len(g) == n_seeds}
    if not complete:
        return None
    key, group = max(complete.items(), key=lambda kv: statistics.fmean(float(r["val_accuracy"]) for r in kv[1]))
    return Cell({k: v for k, v in zip(STRENGTHS, key) if v}, statistics.fmean(float(r["val_accuracy"]) for r in group),
                [100 * (1 - float(r["test_accuracy"])) for r in sorted(group, key=lambda r: int(r["seed"]))])


def dense_error(rows: list[dict[str, str]], method: str) -> list[float]:
    """Test error (%) of the unpruned network of ``method``, one per seed."""
    seen = {}
    for r in rows:
        if r["method"] == method:
            seen[r["seed"]] = 100 * (1 - float(r["dense_test_accuracy"]))
    return list(seen.values())


def plain_dense(study: dict[str, Any]) -> list[str]:
    """Methods that train without a prior and are not fine-tuned: their unpruned net is the reference."""
    return [m for m, spec in study["methods"].items() if spec.get("prior") == "none" and not spec.get("finetune_epochs")]


def results_dir(study: dict[str, Any]) -> Path:
    """Default results folder of a study: ``experiments/results/<study>/``."""
    return HERE.parent / "results" / study["study"]


def fmt(cell: Cell | None) -> str:
    if cell is None:
        return "—"
    return f"{cell.mean:.2f}" if len(cell.errors) < 2 else f"{cell.mean:.2f} ± {cell.sd:.2f}"


def point_text(point: dict[str, str]) -> str:
    return ", ".join(f"{k}={float(v):g}" for k, v in point.items()) or "—"


def build_cells(study: dict[str, Any], rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[float, Cell | None]]:
    """Chosen cells keyed by (method, criterion), then keep fraction."""
    n_seeds = len(study["seeds"])
    return {(m, c): {k: choose(rows, m, c, k, n_seeds) for k in study["keep"]}
            for m, spec in study["methods"].items() for c in criteria(spec)}


def comparison_lines(study: dict[str, Any], cells: dict[tuple[str, str], dict[float, Cell | None]]) -> list[str]:
    """The focus method against every other row: mean error difference vs 2 x the larger sd."""
    focus = study.get("focus")
    if focus is None or (focus, "magnitude") not in cells:
        return []
    lines = [f"\n## {focus} (magnitude) against each baseline\n",
             "Difference = baseline error - HALO error (percentage points; > 0: HALO better). "
             "'> 2 sd' means the difference exceeds twice the larger of the two standard deviations.\n",
             "| baseline | " + " | ".join(f"{100 * k:g}%" for k in study["keep"]) + " |",
             "|---|" + "---|" * len(study["keep"])]
    for (method, criterion), by_keep in cells.items():
        if method == focus:
            continue
        parts = []
        for keep in study["keep"]:
            mine, other = cells[(focus, "magnitude")][keep], by_keep[keep]
            if mine is None or other is None:
                parts.append("—")
                continue
            diff, bar = other.mean - mine.mean, 2 * max(mine.sd, other.sd)
            parts.append(f"{diff:+.2f} ({'> 2 sd' if diff > bar else 'not > 2 sd'})")
        lines.append(f"| {label(method, study['methods'][method], criterion)} | " + " | ".join(parts) + " |")
    return lines


def command(config: Path) -> str:
    """The command that (re)generates a study's results from its config."""
    shown = config.resolve().relative_to(ROOT) if config.resolve().is_relative_to(ROOT) else config
    return f"python experiments/pruning_study/run.py {shown} --workers 2"


def table_markdown(study: dict[str, Any], rows: list[dict[str, str]],
                   cells: dict[tuple[str, str], dict[float, Cell | None]], config: Path) -> str:
    """table.md: mean ± sd test error per method and keep, the chosen strengths, HALO's margins."""
    keeps = study["keep"]
    head = "| method | " + " | ".join(f"{100 * k:g}% kept" for k in keeps) + " |"
    rule = "|---|" + "---|" * len(keeps)
    lines = [f"# {study['study']}: test error (%) after one-shot global magnitude pruning, no fine-tuning "
             "unless stated", "",
             study.get("description", ""), "",
             f"Mean ± sample sd over seeds {', '.join(map(str, study['seeds']))}; end-of-training models; "
             "every method has the same budget of "
             f"{study['epochs']} epochs. Each cell uses the grid point with the best mean VALIDATION accuracy "
             "at that keep fraction (the chosen values are in the second table); keep fractions count every "
             "Linear/Conv weight, the output layer included, biases excluded.", "",
             f"Regenerate with `{command(config)}` (from the repository root; it runs only the runs "
             "missing from results.csv, so delete that file to start over).", ""]
    for method in plain_dense(study):
        errors, spec = dense_error(rows, method), study["methods"][method]
        if len(errors) > 1:
            lines += [f"Unpruned network ({label(method, spec, 'magnitude')}): test error "
                      f"{statistics.fmean(errors):.2f} ± {statistics.stdev(errors):.2f} %.", ""]
    lines += [head, rule]
    for (method, criterion), by_keep in cells.items():
        lines.append(f"| {label(method, study['methods'][method], criterion)} | "
                     + " | ".join(fmt(by_keep[k]) for k in keeps) + " |")
    lines += ["", "## Chosen strengths (best mean validation accuracy)", "", head, rule]
    for (method, criterion), by_keep in cells.items():
        spec = study["methods"][method]
        if "grid" in spec:
            chosen = ("—" if by_keep[k] is None else point_text(by_keep[k].point) for k in keeps)
            lines.append(f"| {label(method, spec, criterion)} | " + " | ".join(chosen) + " |")
    lines += comparison_lines(study, cells)
    return "\n".join(lines) + "\n"


def plot(study: dict[str, Any], rows: list[dict[str, str]], cells: dict[tuple[str, str], dict[float, Cell | None]]):
    """Test error (%) against keep fraction, mean ± sd error bars: all of it (log-log) and a zoom."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    dense = [statistics.fmean(errors) for errors in map(lambda m: dense_error(rows, m), plain_dense(study)) if errors]
    figure, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax in axes:
        for (method, criterion), by_keep in cells.items():
            points = [(100 * k, c.mean, 0 if c.sd != c.sd else c.sd) for k, c in by_keep.items() if c is not None]
            if points:
                x, y, e = zip(*points)
                style = "--" if criterion == "halo-coefficient" else "-"
                ax.errorbar(x, y, yerr=e, marker="o", capsize=3, linestyle=style,
                            label=label(method, study["methods"][method], criterion))
        for value in dense[:1]:
            ax.axhline(value, color="grey", linestyle=":", label="unpruned dense network")
        ax.set_xscale("log")
        ax.set_xticks([100 * k for k in study["keep"]])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("weights kept (% of all Linear/Conv weights, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    full, zoom = axes
    full.set_yscale("log")
    full.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    full.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if f"{value:g}"[0] in "25" else ""))
    full.set_ylabel("test error (%, log scale)")
    full.set_title("all methods", fontsize=10)
    low = min((c.mean for by_keep in cells.values() for c in by_keep.values() if c is not None), default=1.0)
    zoom.set_ylim(0.9 * low, max(3 * low, 5.0))
    zoom.set_ylabel("test error (%)")
    zoom.set_title("zoom on the low-error range", fontsize=10)
    zoom.legend(fontsize=8, loc="upper right")
    figure.suptitle(f"{study['study']}: one-shot magnitude pruning without fine-tuning (unless stated), "
                    f"{study['epochs']}-epoch budget, mean ± sd over seeds {', '.join(map(str, study['seeds']))}",
                    fontsize=10)
    return figure


def write_report(study: dict[str, Any], rows: list[dict[str, str]], out: Path, config: Path) -> None:
    """Write table.md and accuracy_vs_keep.png in ``out`` for the study read from ``config``."""
    cells = build_cells(study, rows)
    write_text(out / "table.md", table_markdown(study, rows, cells, config))
    figure = plot(study, rows, cells)
    save_figure(out / "accuracy_vs_keep.png", figure)
    figure.clf()


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, help="results folder (default: experiments/results/<study>/)")
    args = parser.parse_args()
    study = json.loads(args.config.read_text())
    out = args.out or results_dir(study)
    with (out / "results.csv").open(newline="") as handle:
        write_report(study, list(csv.DictReader(handle)), out, args.config)


if __name__ == "__main__":
    main()
