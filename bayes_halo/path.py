"""Regularisation paths with warm starts (glmnet-style) and the choice of a strength by validation.

``regularization_path(config, strengths)`` trains one point per strength, in increasing order;
every point after the first starts from the previous point's end-of-training weights AND prior
hyper-variables (HALO's lambdas) and trains ``config.epochs`` more epochs with the configured
schedule (a fresh optimiser, momentum reset, learning-rate milestones as fractions of the
point's epochs).  At every point it records the validation accuracy of the dense network and of
its one-shot magnitude-pruned copies, and the fraction of weights with ``|w| < config.near_zero``.
The test set is touched only for the chosen point (and its refit).

Strengths are per example (``mean_CE + R``, see :mod:`bayes_halo.priors.base`).  For HALO and
shared-scale HALO the walk is either ``"xi"`` (``psi = config.psi`` fixed) or ``"ray"``
(``psi = ratio * xi``, both growing together).

``python -m bayes_halo.path`` runs this module's command line (:mod:`bayes_halo.cli.path`).
"""
from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .atomic import save_figure, write_json, write_text
from .data import ArrayData, load_dataset
from .distributed import resolve_device
from .errors import ConfigError
from .models import prunable_parameters
from .models.bayesian import BayesianModule
from .pipeline import build_module, run_fit
from .pruning import keep_masks, magnitude_scores, pruned_copy
from .training.config import FitConfig
from .training.evaluate import accuracy
from .training.trainer import near_zero_fraction, train

PATH_PRIORS = ("laplace", "adaptive-laplace", "halo", "shared-halo")
WALKS = ("xi", "ray")
CSV, PLOT, CHOICE = "path.csv", "path.png", "choice.json"


@dataclass
class PathResult:
    """The path's rows (one per point, plus ``"refit"``), the choice, and each point's end state."""

    rows: list[dict[str, Any]]
    choice: dict[str, Any]
    states: list[dict[str, Tensor]] = field(repr=False)
    keeps: tuple[float, ...]


def strength_grid(start: float, stop: float, points: int) -> list[float]:
    """``points`` log-spaced strengths from ``start`` to ``stop`` (both included)."""
    if not (math.isfinite(start) and math.isfinite(stop) and 0 < start < stop):
        raise ConfigError(f"need 0 < --from < --to, got {start} and {stop}")
    if points < 2:
        raise ConfigError(f"--points must be at least 2, got {points}")
    step = (math.log(stop) - math.log(start)) / (points - 1)
    return [float(f"{math.exp(math.log(start) + i * step):.3g}") for i in range(points)]


def check_path(config: FitConfig, strengths: Sequence[float], walk: str, ratio: float | None,
               target_keep: float | None, refit: bool, refit_epochs: int) -> None:
    """Raise ConfigError for the first setting a path cannot use."""
    if config.prior not in PATH_PRIORS:
        raise ConfigError(f"a path needs a prior with a strength: one of {', '.join(PATH_PRIORS)}, "
                          f"got {config.prior!r}")
    if not strengths:
        raise ConfigError("give at least one strength")
    for s in strengths:
        if not (math.isfinite(s) and s > 0):
            raise ConfigError(f"strengths must be positive numbers, got {s}")
    if any(b <= a for a, b in zip(strengths, strengths[1:])):
        raise ConfigError(f"strengths must increase strictly along a path, got {list(strengths)}")
    if walk not in WALKS:
        raise ConfigError(f"unknown walk {walk!r}; choose one of {', '.join(WALKS)}")
    halo_like = config.prior in ("halo", "shared-halo")
    if walk == "ray" and not halo_like:
        raise ConfigError(f"--walk ray moves psi too; prior {config.prior!r} has no psi")
    if walk == "ray" and (ratio is None or not (math.isfinite(ratio) and ratio > 0)):
        raise ConfigError(f"--walk ray needs a positive --ratio (psi = ratio * xi), got {ratio}")
    if not halo_like and config.psi is not None:
        raise ConfigError(f"prior {config.prior!r} has no psi")
    if walk == "xi" and ratio is not None:
        raise ConfigError("--ratio only applies to --walk ray")
    if target_keep is not None and not (math.isfinite(target_keep) and 0 < target_keep <= 1):
        raise ConfigError(f"--target-keep must be in (0, 1], got {target_keep}")
    if refit and target_keep is None:
        raise ConfigError("--refit refits the chosen point: it needs --target-keep")
    if refit_epochs < 1:
        raise ConfigError(f"--refit-epochs must be at least 1, got {refit_epochs}")


def point_config(config: FitConfig, strength: float, walk: str, ratio: float | None) -> FitConfig:
    """The config of one point: ``xi = strength`` and, on a ray, ``psi = ratio * strength``."""
    if config.prior not in ("halo", "shared-halo"):
        return replace(config, xi=strength, psi=None)
    return replace(config, xi=strength, psi=ratio * strength if walk == "ray" else config.psi)


def regularization_path(config: FitConfig, strengths: Sequence[float], walk: str = "xi",
                        ratio: float | None = None, target_keep: float | None = None, refit: bool = False,
                        refit_epochs: int = 30, data: ArrayData | None = None,
                        log: Callable[[str], None] | None = None, progress: bool = False) -> PathResult:
    """Train along ``strengths`` with warm starts; choose a point for ``target_keep`` (see module doc).

    ``config`` fixes everything but the strengths: prior, data, network, the schedule of each
    point (``config.epochs`` epochs), psi for ``walk="xi"``, the keep fractions evaluated
    (``target_keep`` is added to them).  Without ``target_keep`` the choice is the frontier: for
    every keep fraction, the point with the best validation accuracy.  With it, the chosen point
    maximises validation accuracy at ``target_keep`` (the first such point on ties) and its test
    accuracy is reported; ``refit`` retrains that point's strengths from scratch with
    ``refit_epochs`` epochs (``run_fit``) and reports that model too.
    """
    check_path(config, strengths, walk, ratio, target_keep, refit, refit_epochs)
    keeps = tuple(sorted(set(config.keep) | ({target_keep} if target_keep else set()), reverse=True))
    config = replace(config, keep=keeps)
    say = log or (lambda _: None)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if data is None:
        data = load_dataset(config.dataset, config.data_dir, val_size=config.val_size, seed=config.seed,
                            download=config.download, subset=config.subset)
    data = data.to(resolve_device(config.device))  # where train() puts the module, so evaluation finds both
    pilot = _pilot(config, data, progress) if config.prior == "adaptive-laplace" else None
    rows, states = [], []
    done_epochs = max(1, config.pilot_epochs) if pilot else 0
    for index, strength in enumerate(strengths):
        settings = point_config(config, strength, walk, ratio)
        module = build_module(settings, data.input_shape, data.n_classes, data.n_train, pilot[0] if pilot else None)
        if states:
            module.load_state_dict(states[-1])  # the warm start: weights and hyper-variables
        elif pilot:
            module.net.load_state_dict(pilot[1])
        result = train(module, data, settings, progress=progress, label=f"point {index + 1}/{len(strengths)}")
        states.append({k: v.detach().clone() for k, v in module.state_dict().items()})
        done_epochs += settings.epochs
        rows.append({"point": index + 1, "xi": settings.xi, "psi": settings.psi, "epochs": settings.epochs,
                     "cumulative_epochs": done_epochs, **_validation(module, data, settings),
                     "train_seconds": round(result.train_seconds, 2)})
        say(_summary(rows[-1], keeps))
    choice = {"prior": config.prior, "walk": walk, "ratio": ratio, "target_keep": target_keep,
              "frontier": frontier(rows, keeps)}
    if target_keep is not None:
        best = choose(rows, target_keep)
        module = build_module(point_config(config, strengths[best], walk, ratio), data.input_shape,
                              data.n_classes, data.n_train, pilot[0] if pilot else None)
        module.load_state_dict(states[best])
        rows[best].update(_test(module, data, config, target_keep))
        choice["chosen"] = {k: rows[best][k] for k in ("point", "xi", "psi", "cumulative_epochs", _val(target_keep),
                                                        "test_dense", "test_at_target")}
        choice["chosen"]["at_edge"] = grid_edge(best, len(strengths))
        if refit:
            rows.append(_refit(point_config(config, strengths[best], walk, ratio), data, refit_epochs,
                               target_keep, progress))
            choice["refit"] = {k: rows[-1][k] for k in ("xi", "psi", "epochs", _val(target_keep),
                                                         "test_dense", "test_at_target")}
            say(_summary(rows[-1], keeps))
    return PathResult(rows, choice, states, keeps)


def choose(rows: Sequence[dict[str, Any]], target_keep: float) -> int:
    """Index of the path point with the best validation accuracy at ``target_keep`` (first on ties)."""
    points = [r for r in rows if r["point"] != "refit"]
    scores = [r[_val(target_keep)] for r in points]
    return scores.index(max(scores))


def grid_edge(index: int, points: int) -> str | None:
    """``"strongest"`` or ``"weakest"`` when point ``index`` ends a path of several points: the best
    strength may then lie beyond the grid."""
    if points < 2:
        return None
    return "strongest" if index == points - 1 else "weakest" if index == 0 else None


def frontier(rows: Sequence[dict[str, Any]], keeps: Sequence[float]) -> list[dict[str, Any]]:
    """Best validation accuracy at every keep fraction, and the point that reaches it."""
    out = []
    for keep in keeps:
        best = choose(rows, keep)
        out.append({"keep": keep, "point": rows[best]["point"], "xi": rows[best]["xi"], "psi": rows[best]["psi"],
                    "val_accuracy": rows[best][_val(keep)]})
    return out


def write_outputs(result: PathResult, out: str | Path) -> Path:
    """Write ``path.csv``, ``path.png`` and ``choice.json`` in ``out`` (each atomically)."""
    out = Path(out)
    keeps = result.keeps
    target = result.choice.get("target_keep")
    columns = ["point", "xi", "psi", "epochs", "cumulative_epochs", "val_dense", *(_val(k) for k in keeps),
               "near_zero", "train_seconds", "test_dense", "test_at_target"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    write_text(out / CSV, buffer.getvalue())
    write_json(out / CHOICE, result.choice)
    import matplotlib.pyplot as plt  # plotting loads only when outputs are written

    figure = plot_path(result.rows, keeps, result.choice, target)
    save_figure(out / PLOT, figure)
    plt.close(figure)
    return out


def plot_path(rows: Sequence[dict[str, Any]], keeps: Sequence[float], choice: dict[str, Any],
              target: float | None):
    """Validation accuracy (dense and pruned) and sparsity against xi, one marker per point."""
    import matplotlib.pyplot as plt

    points = [r for r in rows if r["point"] != "refit"]
    xi = [r["xi"] for r in points]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6.5), height_ratios=(2, 1))
    top.plot(xi, [100 * r["val_dense"] for r in points], "k-o", label="dense (unpruned)")
    for keep in keeps:
        top.plot(xi, [100 * r[_val(keep)] for r in points], "-o", markersize=4,
                 linewidth=2.5 if keep == target else 1.2, label=f"{100 * keep:g}% of weights kept")
    if "chosen" in choice:
        chosen = choice["chosen"]
        top.plot([chosen["xi"]], [100 * chosen[_val(target)]], "r*", markersize=16, label="chosen point")
    top.set_ylabel("validation accuracy (%)")
    top.legend(fontsize=8, loc="lower left")
    top.grid(True, which="both", alpha=0.3)
    ray = f"psi = {choice['ratio']:g} * xi" if choice["walk"] == "ray" else (
        f"psi = {points[0]['psi']:g} fixed" if points[0]["psi"] is not None else "")
    top.set_title(f"{choice['prior']} regularisation path (warm starts) {ray}".strip(), fontsize=10)
    bottom.plot(xi, [100 * r["near_zero"] for r in points], "b-o")
    bottom.set_ylabel("weights with |w| < 1e-3 (%)")
    bottom.set_xscale("log")
    bottom.set_xlabel("xi (per-example penalty strength, log scale)")
    bottom.grid(True, which="both", alpha=0.3)
    return figure


def _val(keep: float) -> str:
    return f"val_keep_{keep:g}"


def _validation(module: BayesianModule, data: ArrayData, config: FitConfig) -> dict[str, float]:
    """Validation accuracy, dense and magnitude-pruned at each keep, and the near-zero fraction."""
    scores = magnitude_scores({k: w.detach() for k, w in module.weights().items()})
    row = {"val_dense": accuracy(module.net, data.x_val, data.y_val)}
    for keep in config.keep:
        pruned = pruned_copy(module.net, keep_masks(scores, keep, by=config.prune_by))
        row[_val(keep)] = accuracy(pruned, data.x_val, data.y_val)
    row["near_zero"] = near_zero_fraction(module, config.near_zero)
    return row


def _test(module: BayesianModule, data: ArrayData, config: FitConfig, keep: float) -> dict[str, float]:
    """Test accuracy of the dense network and of its magnitude-pruned copy at ``keep``."""
    scores = magnitude_scores({k: w.detach() for k, w in module.weights().items()})
    pruned = pruned_copy(module.net, keep_masks(scores, keep, by=config.prune_by))
    return {"test_dense": accuracy(module.net, data.x_test, data.y_test),
            "test_at_target": accuracy(pruned, data.x_test, data.y_test)}


def _refit(config: FitConfig, data: ArrayData, epochs: int, keep: float, progress: bool) -> dict[str, Any]:
    """Retrain the chosen strengths from scratch with the full schedule; the ``"refit"`` row."""
    settings = replace(config, epochs=epochs)
    metrics = run_fit(settings, progress=progress, data=data).metrics
    magnitude = {r["keep"]: r for r in metrics["pruned"] if r["criterion"] == "magnitude"}
    pilot = max(1, settings.pilot_epochs) if settings.prior == "adaptive-laplace" else 0
    return {"point": "refit", "xi": settings.xi, "psi": settings.psi, "epochs": epochs,
            "cumulative_epochs": epochs + pilot, "val_dense": metrics["dense"]["val_accuracy"],
            **{_val(k): magnitude[k]["val_accuracy"] for k in settings.keep},
            "near_zero": metrics["history"][-1]["near_zero"], "train_seconds": round(metrics["train_seconds"], 2),
            "test_dense": metrics["dense"]["test_accuracy"], "test_at_target": magnitude[keep]["test_accuracy"]}


def _pilot(config: FitConfig, data: ArrayData, progress: bool) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Adaptive lasso: a dense pilot fit of ``pilot_epochs``; (its prunable weights, its state)."""
    settings = replace(config, prior="none", xi=None, psi=None, epochs=max(1, config.pilot_epochs))
    module = build_module(settings, data.input_shape, data.n_classes, data.n_train)
    train(module, data, settings, progress=progress, label="pilot")
    weights = prunable_parameters(module.net, config.prune_scope, config.include_bias, config.exclude)
    return ({k: v.detach().clone() for k, v in weights.items()},
            {k: v.detach().clone() for k, v in module.net.state_dict().items()})


def _summary(row: dict[str, Any], keeps: Sequence[float]) -> str:
    psi = "" if row["psi"] is None else f" psi={row['psi']:.3g}"
    accs = " ".join(f"{100 * k:g}%:{100 * row[_val(k)]:.2f}" for k in keeps)
    return (f"point {row['point']} xi={row['xi']:.3g}{psi} ({row['epochs']} epochs): val dense "
            f"{100 * row['val_dense']:.2f}% | pruned {accs} | |w|<1e-3: {100 * row['near_zero']:.1f}%")


if __name__ == "__main__":
    from .cli.path import main

    sys.exit(main())
