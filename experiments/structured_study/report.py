"""``results.csv`` of the structured study -> ``table.md``: per method and criterion, the strengths with the
best MEAN VALIDATION accuracy over seeds, then that choice's units, multiply-adds and test error.

    python experiments/structured_study/report.py experiments/results/structured-lenet300
"""
from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

from bayes_halo.atomic import write_text


def table(rows: list[dict[str, str]]) -> str:
    """The markdown table (one line per method and criterion)."""
    runs: dict[tuple[str, str], dict[tuple[str, str], list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        runs[(r["method"], r["criterion"])][(r["xi"], r["psi"])].append(r)
    lines = ["| method | criterion | xi, psi (chosen on val) | seeds | units per layer (each seed) | inputs read | "
             "MACs per example (mean) | test error % (mean +- sd) | same runs unpruned, test error % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (method, criterion), points in runs.items():
        strengths, chosen = max(points.items(),
                                key=lambda kv: statistics.mean(float(r["val_accuracy"]) for r in kv[1]))
        errors = [100 * (1 - float(r["test_accuracy"])) for r in chosen]
        dense = [100 * (1 - float(r["dense_test_accuracy"])) for r in chosen]
        spread = statistics.stdev(errors) if len(errors) > 1 else float("nan")
        lines.append(f"| {method} | {criterion} | {', '.join(s for s in strengths if s) or '-'} | {len(chosen)} | "
                     f"{' / '.join(r['units'] for r in chosen)} | "
                     f"{statistics.mean(int(r['inputs_read']) for r in chosen):.0f} | "
                     f"{statistics.mean(int(r['macs']) for r in chosen):,.0f} | "
                     f"{statistics.mean(errors):.2f} +- {spread:.2f} | {statistics.mean(dense):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="folder holding results.csv")
    folder = Path(parser.parse_args().results)
    rows = list(csv.DictReader((folder / "results.csv").open()))
    write_text(folder / "table.md", table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
