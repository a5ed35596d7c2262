"""Tables of experiments/results/own_loop: the screens (seed 0), the SGD-vs-AdamW comparisons (3 seeds) and
the issue's goal at 30 epochs.

For each run set and keep fraction the pruning criterion is chosen by mean VALIDATION accuracy;
its test accuracy is reported as mean ± sample sd over seeds.  The goal table picks, per path
(SGD, AdamW) and keep fraction, the strengths and criterion with the best seed-0 validation accuracy
in the 30-epoch screen, and reports that point's test accuracy over seeds 0-2.

    python experiments/own_loop/report.py > experiments/own_loop/results.md
"""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results" / "own_loop"
KEEPS = (0.05, 0.02)


def label(run: dict) -> str:
    """``sgd``, or the AdamW prior step with its lambdas' update, and the strengths."""
    step = "SGD, coupled (PriorSGD's update)" if run["method"] == "sgd" else f"AdamW, {run['method']}" + (
        ", lambdas profiled" if run["hyper"] == "profile" else ", lambdas by AdamW")
    return f"{step}, xi={run['xi']:g}, psi={run['psi']:g}"


def table(folder: Path) -> list[str]:
    """One markdown row per run set: per keep, the criterion with the best mean validation accuracy."""
    groups = defaultdict(list)
    for path in sorted(folder.glob("*.json")):
        run = json.loads(path.read_text())
        groups[label(run)].append(run)
    lines = ["| runs | epochs | seeds | dense test | " + " | ".join(f"{k:.0%} kept: test (val), criterion" for k in KEEPS)
             + " |", "|---|---|---|---|" + "---|" * len(KEEPS)]
    for name, runs in groups.items():
        cells = []
        for keep in KEEPS:
            by_criterion = defaultdict(list)
            for run in runs:
                for row in run["pruned"]:
                    if row["keep"] == keep:
                        by_criterion[row["criterion"]].append(row)
            criterion, rows = max(by_criterion.items(), key=lambda item: statistics.fmean(r["val"] for r in item[1]))
            cells.append(f"{mean_sd([r['test'] for r in rows])} ({100 * statistics.fmean(r['val'] for r in rows):.2f}), "
                         f"{criterion}")
        lines.append(f"| {name} | {runs[0]['epochs']} | {len(runs)} | {mean_sd([r['dense_test'] for r in runs])} | "
                     + " | ".join(cells) + " |")
    return lines


def mean_sd(values: list[float]) -> str:
    """``mean ± sd`` in percent (sd only with two or more values)."""
    mean = 100 * statistics.fmean(values)
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def goal(folder: Path) -> list[str]:
    """Per keep: each path's point chosen on seed 0's validation accuracy, its test accuracy over seeds, the gap."""
    runs = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    lines = ["| keep | path | chosen on seed-0 validation | seeds | test accuracy % |", "|---|---|---|---|---|"]
    for keep in KEEPS:
        means = {}
        for path, methods in (("SGD", {"sgd"}), ("AdamW", {"coupled", "decoupled", "proximal"})):
            scored = [(row["val"], label(run), row["criterion"]) for run in runs if run["seed"] == 0
                      and run["method"] in methods for row in run["pruned"] if row["keep"] == keep]
            _, name, criterion = max(scored)
            tests = [row["test"] for run in runs if label(run) == name for row in run["pruned"]
                     if row["keep"] == keep and row["criterion"] == criterion]
            means[path] = statistics.fmean(tests)
            lines.append(f"| {keep:.0%} | {path} | {name}, {criterion} | {len(tests)} | {mean_sd(tests)} |")
        lines.append(f"| {keep:.0%} | AdamW - SGD | | | {100 * (means['AdamW'] - means['SGD']):+.2f} points |")
    return lines


def main() -> None:
    for title, folder in (("Screen (seed 0, 4 epochs)", RESULTS / "screen"),
                          ("SGD path vs AdamW path (3 seeds, 8 epochs)", RESULTS / "final"),
                          ("30 epochs: screen (seed 0) and the chosen points (seeds 0-2)", RESULTS / "screen30")):
        print(f"## {title}\n")
        print("\n".join(table(folder)))
        print()
    print("## The goal: AdamW path within 0.3 points of the SGD path (30 epochs)\n")
    print("\n".join(goal(RESULTS / "screen30")))


if __name__ == "__main__":
    main()
