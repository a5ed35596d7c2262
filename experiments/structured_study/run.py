"""The structured MNIST study: group HALO, group lasso, per-weight HALO + dead-unit removal and dense +
L1-norm channel pruning (with and without fine-tuning), compared at EQUAL multiply-adds.

Every run trains with the config's budget, then each method's end-of-training network is pruned to
the largest number of its groups (units/channels, or weights for per-weight HALO) whose exported
network needs at most ``max_macs`` multiply-adds per example, measured after physical removal
(:func:`bayes_halo.pruning.structured.keep_within_macs`), or, with ``max_units`` (a list, one cap
per grouping in layer order), to at most that many units in each layer (:func:`keep_within_units`;
group methods and dense only).  Fine-tuning (dense + L1 always, group methods with ``finetune_groups``)
runs ``finetune_epochs`` at ``finetune_lr`` (default: the run config's), likelihood only, masks fixed.  Rows (one per run and criterion) go to
``<out>/results.csv``, rewritten atomically after every run; runs already there are skipped.
``report.py`` then picks each method's strengths by mean VALIDATION accuracy over seeds.

    python experiments/structured_study/run.py experiments/structured_study/configs/lenet300.json --workers 2
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bayes_halo.atomic import write_text
from bayes_halo.config.sections import RunConfig
from bayes_halo.data import load_dataset
from bayes_halo.groups import build_groupings
from bayes_halo.models import prunable_layers
from bayes_halo.pipeline import finetune, run_fit
from bayes_halo.pruning import keep_masks, pruned_copy
from bayes_halo.pruning.structured import (group_criteria, group_masks, keep_groups, keep_within_macs, norm_scores,
                                          structured_report)
from bayes_halo.pruning.sweep import pruning_criteria
from bayes_halo.training.evaluate import split_score

FIELDS = ["model", "method", "criterion", "xi", "psi", "seed", "epochs", "subset", "finetune_epochs", "max_macs", "max_units",
          "units", "inputs_read", "macs", "parameters", "val_accuracy", "test_accuracy", "dense_val_accuracy",
          "dense_test_accuracy", "train_seconds"]
SHAPE = (1, 28, 28)


def jobs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (method, grid point, seed) of the study as flat run settings."""
    out = []
    for method, spec in config["methods"].items():
        for point in spec.get("grid", [{}]):
            for seed in config["seeds"]:
                out.append({"method": method, "prior": spec["prior"], "groups": spec.get("groups", "weight"),
                            "seed": seed, **point})
    return out


def _inputs_read(net: nn.Module) -> int:
    """Input features/channels the first layer reads with a non-zero weight."""
    first = next(m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    return int(first.weight.detach().ne(0).transpose(0, 1).flatten(1).any(1).sum())


def _row(masked: nn.Module, data, **fields: Any) -> dict[str, Any]:
    report = structured_report(masked, SHAPE)
    return {**fields, "units": "-".join(map(str, report["units"])), "inputs_read": _inputs_read(masked),
            "macs": report["macs"], "parameters": report["parameters"],
            "val_accuracy": split_score(masked, data, "val"), "test_accuracy": split_score(masked, data, "test")}


def _weights_within_macs(net: nn.Module, scores: dict[str, torch.Tensor], max_macs: int) -> nn.Module:
    """Per-weight magnitude pruning to the largest number of weights whose exported network fits ``max_macs``."""
    total = sum(s.numel() for s in scores.values())
    masked = lambda k: pruned_copy(net, keep_masks(scores, k / total)).eval()  # noqa: E731
    low, high = 1, total
    while low < high:
        mid = (low + high + 1) // 2
        if structured_report(masked(mid), SHAPE)["macs"] <= max_macs:
            low = mid
        else:
            high = mid - 1
    return masked(low)


def keep_within_units(net: nn.Module, groupings: list, scores: dict[str, torch.Tensor],
                      caps: list[int]) -> dict[str, torch.Tensor]:
    """Masks keeping, in each grouping (layer order: the first Linear's inputs, then each hidden layer), its
    ``caps[i]`` best-scored groups: a cap on the units of every layer (Bayesian Compression's 311-86-14)."""
    if len(caps) != len(groupings):
        raise ValueError(f"{len(caps)} unit caps for {len(groupings)} groupings ({[g.name for g in groupings]})")
    kept = {g.name: keep_groups({g.name: scores[g.name]}, min(cap, g.n_groups), by="layer")[g.name]
            for g, cap in zip(groupings, caps)}
    return group_masks(groupings, kept, dict(net.named_parameters()))


def run_job(args: tuple[dict[str, Any], dict[str, Any]]) -> list[dict[str, Any]]:
    """Train one run and prune it to the budget by every criterion of its method."""
    study, job = args
    torch.set_num_threads(1)
    settings = {k: v for k, v in job.items() if k != "method"}
    config = RunConfig.from_flat(model=study["model"], dataset="mnist", epochs=study["epochs"],
                                 subset=study.get("subset"), val_size=study["val_size"], keep=(1.0,), threads=1,
                                 download=False, **{k: study[k] for k in ("finetune_lr",) if k in study}, **settings)
    data = load_dataset("mnist", None, val_size=study["val_size"], seed=job["seed"], download=False,
                        subset=study.get("subset"))
    result = run_fit(config, progress=False, data=data)
    module, net, budget = result.module, result.module.net.eval(), study.get("max_macs")
    caps = study.get("max_units")
    prune = ((lambda groupings, scores: keep_within_units(net, groupings, scores, caps)) if caps else
             (lambda groupings, scores: keep_within_macs(net, groupings, scores, SHAPE, budget)[0]))
    common = {"model": study["model"], "method": job["method"], "xi": job.get("xi", ""), "psi": job.get("psi", ""),
              "seed": job["seed"], "epochs": study["epochs"], "subset": study.get("subset"), "finetune_epochs": 0,
              "max_macs": budget or "", "max_units": "-".join(map(str, caps or [])), "dense_val_accuracy": result.metrics["dense"]["val_accuracy"],
              "dense_test_accuracy": result.metrics["dense"]["test_accuracy"],
              "train_seconds": round(result.metrics["train_seconds"], 1)}
    tensors = dict(net.named_parameters())
    if module.groupings:  # group priors: rank the trained groups by norm and by the learned coefficient
        groupings = list(module.groupings.values())
        rows = []
        for criterion, scores in group_criteria(module).items():
            masks = prune(groupings, scores)
            rows.append(_row(pruned_copy(net, masks).eval(), data, **common, criterion=criterion))
            if study.get("finetune_groups"):  # the same masks, then likelihood-only epochs (as dense + L1)
                tuned = finetune(net, masks, data, config.replace(finetune_epochs=study["finetune_epochs"]))
                rows.append(_row(tuned.eval(), data, **{**common, "finetune_epochs": study["finetune_epochs"]},
                                 criterion=f"{criterion}+finetune"))
        return rows
    if job["prior"] != "none":  # per-weight prior: magnitude pruning, dead units removed by export
        return [_row(_weights_within_macs(net, pruning_criteria(module)["magnitude"], budget), data, **common,
                     criterion="magnitude")]
    groupings = build_groupings("unit", net, prunable_layers(net), torch.zeros(2, *SHAPE))
    masks = prune(groupings, norm_scores(groupings, tensors, p=1))
    rows = [_row(pruned_copy(net, masks).eval(), data, **common, criterion="l1-channel")]
    tuned = finetune(net, masks, data, config.replace(finetune_epochs=study["finetune_epochs"]))
    rows.append(_row(tuned.eval(), data, **{**common, "finetune_epochs": study["finetune_epochs"]},
                     criterion="l1-channel+finetune"))
    return rows


def _key(row: dict[str, Any]) -> tuple:
    return (row["method"], str(row["xi"]), str(row["psi"]), str(row["seed"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", help="results folder (default: experiments/results/<config name>-structured)")
    args = parser.parse_args()
    study = json.loads(Path(args.config).read_text())
    out = Path(args.out or f"experiments/results/structured-{Path(args.config).stem}")
    path = out / "results.csv"
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    done = {_key(r) for r in rows}
    todo = [j for j in jobs(study) if _key({"xi": "", "psi": "", **j}) not in done]
    print(f"{len(todo)} runs to do ({len(done)} done); {study['model']}, {study['epochs']} epochs, "
          f"subset {study.get('subset')}", flush=True)
    start = time.time()
    with get_context("spawn").Pool(args.workers) as pool:
        for i, new in enumerate(pool.imap_unordered(run_job, [(study, j) for j in todo])):
            rows.extend(new)
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
            write_text(path, buffer.getvalue())
            for r in new:
                print(f"[{i + 1}/{len(todo)} {time.time() - start:.0f}s] {r['method']} {r['criterion']} xi={r['xi']} "
                      f"psi={r['psi']} seed={r['seed']}: {r['units']} {r['macs']} MACs, "
                      f"test {100 * float(r['test_accuracy']):.2f} %", flush=True)


if __name__ == "__main__":
    sys.exit(main())
