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

:class:`PathConfig` declares the path's own settings (the grid, the walk, the choice); the
command line ``python -m bayes_halo.path`` (:mod:`bayes_halo.cli.path`) derives its flags from
it and from the run's sections.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from .atomic import save_figure, write_json, write_text
from .config.fields import at_least, check_fields, interval, positive, setting
from .config.priors import default_strengths
from .config.sections import RunConfig
from .data import ArrayData
from .distributed import resolve_device
from .errors import ConfigError
from .models.bayesian import BayesianModule
from . import __version__
from .pipeline import (CONFIG, Pilot, data_module, evaluate_run, load_data, pilot_epochs_used, pilot_fit, run_fit,
                       save_run, starting_module, train_module)
from .priors import PRIORS, prior_class
from .pruning import keep_masks, magnitude_scores, pruned_copy
from .training.evaluate import split_score
from .training.trainer import near_zero_fraction

WALKS = ("xi", "ray")
CSV, PLOT, CHOICE = "path.csv", "path.png", "choice.json"
#: run folders (as ``fit`` writes them) of the chosen point and of its refit, inside the path's folder
CHOSEN, REFIT = "chosen", "refit"


def path_priors() -> tuple[str, ...]:
    """Registered priors with a finite MAP and a strength ``xi`` to walk."""
    return tuple(name for name, cls in PRIORS.items()
                 if cls is not None and not cls.map_is_degenerate and "xi" in cls.strengths)


@dataclass(frozen=True)
class PathConfig:
    """A path's own settings: the grid of strengths, how psi moves, and the choice of a point."""

    strengths: tuple[float, ...] = setting((), "the xi values, strictly increasing (per example)", metavar="XI")
    start: float | None = setting(None, "first xi of a log-spaced grid (default: the prior's default xi / 3)",
                                  positive(), metavar="XI", flag="--from")
    stop: float | None = setting(None, "last xi of a log-spaced grid (default: the prior's default xi x 10)",
                                 positive(), metavar="XI", flag="--to")
    points: int = setting(6, "points of the log-spaced grid", at_least(2))
    walk: str = setting("xi", "halo, shared-halo: 'xi' moves xi with psi fixed at --psi; 'ray' moves both, "
                        "psi = --ratio * xi", choices=WALKS)
    ratio: float | None = setting(None, "psi / xi on --walk ray", positive())
    target_keep: float | None = setting(None, "choose the point with the best validation accuracy at this keep "
                                        "fraction", interval(0, 1, "right"), metavar="FRACTION")
    refit: bool = setting(False, "retrain the chosen strengths from scratch for --refit-epochs epochs")
    refit_epochs: int = setting(30, "epochs of the refit", at_least(1))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.strengths and (self.start is not None or self.stop is not None):
            raise ConfigError("give either `strengths` or `start`/`stop`, not both")

    def grid(self, prior: str) -> list[float]:
        """``strengths``, or the log-spaced grid ``start .. stop`` (defaults from the prior's default xi)."""
        if self.strengths:
            return list(self.strengths)
        xi = default_strengths(prior).get("xi")
        if (self.start is None or self.stop is None) and xi is None:
            raise ConfigError(f"prior {prior!r} has no default xi: give `strengths` or `start`/`stop`")
        return strength_grid(xi / 3 if self.start is None else self.start,
                             xi * 10 if self.stop is None else self.stop, self.points)


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
        raise ConfigError(f"need 0 < `start` < `stop`, got {start} and {stop}")
    if points < 2:
        raise ConfigError(f"`points` must be at least 2, got {points}")
    step = (math.log(stop) - math.log(start)) / (points - 1)
    return [float(f"{math.exp(math.log(start) + i * step):.3g}") for i in range(points)]


def check_path(config: RunConfig, strengths: Sequence[float], walk: str, ratio: float | None,
               target_keep: float | None, refit: bool, refit_epochs: int) -> None:
    """Raise ConfigError for the first setting a path cannot use."""
    if config.prior.prior not in path_priors():
        raise ConfigError(f"a path needs a `prior` with a strength: one of {', '.join(path_priors())}, "
                          f"got {config.prior.prior!r}")
    if not strengths:
        raise ConfigError("give at least one of `strengths`")
    for s in strengths:
        if not (math.isfinite(s) and s > 0):
            raise ConfigError(f"`strengths` must be positive numbers, got {s}")
    if any(b <= a for a, b in zip(strengths, strengths[1:])):
        raise ConfigError(f"`strengths` must increase strictly along a path, got {list(strengths)}")
    if walk not in WALKS:
        raise ConfigError(f"unknown `walk` {walk!r}; choose one of {', '.join(WALKS)}")
    has_psi = "psi" in prior_class(config.prior.prior_name).strengths
    if walk == "ray" and not has_psi:
        raise ConfigError(f"`walk` ray moves `psi` too; prior {config.prior.prior!r} has no psi")
    if walk == "ray" and (ratio is None or not (math.isfinite(ratio) and ratio > 0)):
        raise ConfigError(f"`walk` ray needs a positive `ratio` (psi = ratio * xi), got {ratio}")
    if walk == "xi" and ratio is not None:
        raise ConfigError("`ratio` only applies to `walk` ray")
    if target_keep is not None and not (math.isfinite(target_keep) and 0 < target_keep <= 1):
        raise ConfigError(f"`target_keep` must be in (0, 1], got {target_keep}")
    if refit and target_keep is None:
        raise ConfigError("`refit` refits the chosen point: it needs `target_keep`")
    if refit_epochs < 1:
        raise ConfigError(f"`refit_epochs` must be at least 1, got {refit_epochs}")


def point_config(config: RunConfig, strength: float, walk: str, ratio: float | None) -> RunConfig:
    """The config of one point: ``xi = strength`` and, on a ray, ``psi = ratio * strength``."""
    if walk == "ray":
        return config.replace(xi=strength, psi=ratio * strength)
    return config.replace(xi=strength)


def regularization_path(config: RunConfig, strengths: Sequence[float], walk: str = "xi",
                        ratio: float | None = None, target_keep: float | None = None, refit: bool = False,
                        refit_epochs: int = 30, data: ArrayData | None = None,
                        log: Callable[[str], None] | None = None, progress: bool = False,
                        out: str | Path | None = None) -> PathResult:
    """Train along ``strengths`` with warm starts; choose a point for ``target_keep`` (see module doc).

    ``config`` fixes everything but the strengths: prior, data, network, the schedule of each
    point (``config.epochs`` epochs), psi for ``walk="xi"``, the keep fractions evaluated
    (``target_keep`` is added to them).  Without ``target_keep`` the choice is the frontier: for
    every keep fraction, the point with the best validation accuracy.  With it, the chosen point
    maximises validation accuracy at ``target_keep`` (the first such point on ties) and its test
    accuracy is reported; ``refit`` retrains that point's strengths from scratch with
    ``refit_epochs`` epochs (``run_fit``) and reports that model too.  With ``out``, the chosen
    point is saved as a run folder ``out/chosen`` and the refit as ``out/refit`` (``model.pt``,
    ``config.json``, ``metrics.json``, as ``fit`` writes them), so ``load_run`` and
    ``python -m bayes_halo.export`` work on either.
    """
    check_path(config, strengths, walk, ratio, target_keep, refit, refit_epochs)
    keeps = tuple(sorted(set(config.prune.keep) | ({target_keep} if target_keep else set()), reverse=True))
    config = config.replace(keep=keeps)
    say = log or (lambda _: None)
    data = (data if data is not None else load_data(config)).to(resolve_device(config.train.device))
    if data.spec.metric != "accuracy":
        raise ConfigError(f"the path chooses strengths by validation accuracy, and {config.data.dataset} reports "
                          f"{data.spec.metric}: run fit at each strength instead")
    pilot = pilot_fit(config, data, progress=progress)
    rows, states = [], []
    done_epochs = pilot_epochs_used(config)
    for index, strength in enumerate(strengths):
        settings = point_config(config, strength, walk, ratio)
        module = starting_module(settings, data, pilot)
        if states:
            module.load_state_dict(states[-1])  # the warm start: weights and hyper-variables
        result = train_module(settings, module, data, progress=progress,
                              label=f"point {index + 1}/{len(strengths)}")
        states.append({k: v.detach().clone() for k, v in module.state_dict().items()})
        done_epochs += settings.train.epochs
        rows.append({"point": index + 1, "xi": settings.prior.xi, "psi": settings.prior.psi,
                     "epochs": settings.train.epochs,
                     "cumulative_epochs": done_epochs, **_validation(module, data, settings),
                     "train_seconds": round(result.train_seconds, 2)})
        say(_summary(rows[-1], keeps))
    choice = {"prior": config.prior.prior, "groups": config.prior.groups, "walk": walk, "ratio": ratio, "target_keep": target_keep,
              "frontier": frontier(rows, keeps)}
    if target_keep is not None:
        best = choose(rows, target_keep)
        chosen_config = point_config(config, strengths[best], walk, ratio)
        module = data_module(chosen_config, data, pilot)
        module.load_state_dict(states[best])
        rows[best].update(_test(module, data, config, target_keep))
        if out is not None:
            _save_chosen(Path(out) / CHOSEN, chosen_config, module, data, pilot, rows[best]["train_seconds"])
        choice["chosen"] = {k: rows[best][k] for k in ("point", "xi", "psi", "cumulative_epochs", _val(target_keep),
                                                        "test_dense", "test_at_target")}
        choice["chosen"]["at_edge"] = grid_edge(best, len(strengths))
        if refit:
            rows.append(_refit(chosen_config, data, refit_epochs, target_keep, progress,
                               Path(out) / REFIT if out is not None else None))
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
    from matplotlib.ticker import FixedLocator, NullLocator

    points = [r for r in rows if r["point"] != "refit"]
    xi = [r["xi"] for r in points]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8.5, 6.5), height_ratios=(2, 1),
                                         layout="constrained")
    top.plot(xi, [100 * r["val_dense"] for r in points], "k-o", label="dense (unpruned)")
    for keep in keeps:
        top.plot(xi, [100 * r[_val(keep)] for r in points], "-o", markersize=4,
                 linewidth=2.5 if keep == target else 1.2, label=f"{100 * keep:g}% of weights kept")
    if "chosen" in choice:
        chosen = choice["chosen"]
        top.plot([chosen["xi"]], [100 * chosen[_val(target)]], "r*", markersize=16, label="chosen point")
    top.set_ylabel("validation accuracy (%)")
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    top.grid(True, alpha=0.3)
    ray = f"psi = {choice['ratio']:g} * xi" if choice["walk"] == "ray" else (
        f"psi = {points[0]['psi']:g} fixed" if points[0]["psi"] is not None else "")
    top.set_title(f"{choice['prior']} regularisation path (warm starts) {ray}".strip(), fontsize=10)
    bottom.plot(xi, [100 * r["near_zero"] for r in points], "b-o")
    bottom.set_ylabel("weights with |w| < 1e-3 (%)")
    bottom.set_xscale("log")
    bottom.xaxis.set_major_locator(FixedLocator(xi))  # one labelled tick per point, nothing in between
    bottom.xaxis.set_major_formatter(lambda v, _: f"{v:.2g}")
    bottom.xaxis.set_minor_locator(NullLocator())
    bottom.tick_params(axis="x", labelrotation=30 if len(xi) > 4 else 0)
    bottom.set_xlabel("xi (per-example penalty strength, log scale; a tick per path point)")
    bottom.grid(True, alpha=0.3)
    return figure


def _val(keep: float) -> str:
    return f"val_keep_{keep:g}"


def _validation(module: BayesianModule, data: ArrayData, config: RunConfig) -> dict[str, float]:
    """Validation accuracy, dense and magnitude-pruned at each keep, and the near-zero fraction."""
    scores = magnitude_scores({k: w.detach() for k, w in module.weights().items()})
    row = {"val_dense": split_score(module.net, data, "val")}
    for keep in config.prune.keep:
        pruned = pruned_copy(module.net, keep_masks(scores, keep, by=config.prune.prune_by))
        row[_val(keep)] = split_score(pruned, data, "val")
    row["near_zero"] = near_zero_fraction(module, config.train.near_zero)
    return row


def _test(module: BayesianModule, data: ArrayData, config: RunConfig, keep: float) -> dict[str, float]:
    """Test accuracy of the dense network and of its magnitude-pruned copy at ``keep``."""
    scores = magnitude_scores({k: w.detach() for k, w in module.weights().items()})
    pruned = pruned_copy(module.net, keep_masks(scores, keep, by=config.prune.prune_by))
    return {"test_dense": split_score(module.net, data, "test"),
            "test_at_target": split_score(pruned, data, "test")}


def _save_chosen(out: Path, config: RunConfig, module: BayesianModule, data: ArrayData, pilot: Pilot | None,
                 train_seconds: float) -> None:
    """The chosen point as a run folder (its end-of-training network; ``config.json`` holds its strengths)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, {**config.to_dict(), "version": __version__})
    save_run(out, config, module, data, evaluate_run(module, data, config, train_seconds=train_seconds), pilot)


def _refit(config: RunConfig, data: ArrayData, epochs: int, keep: float, progress: bool,
           out: Path | None = None) -> dict[str, Any]:
    """Retrain the chosen strengths from scratch with the full schedule (a run folder in ``out``);
    returns the ``"refit"`` row."""
    settings = config.replace(epochs=epochs)
    metrics = run_fit(settings, out, overwrite=True, progress=progress, data=data).metrics
    magnitude = {r["keep"]: r for r in metrics["pruned"] if r["criterion"] == "magnitude"}
    return {"point": "refit", "xi": settings.prior.xi, "psi": settings.prior.psi, "epochs": epochs,
            "cumulative_epochs": epochs + pilot_epochs_used(settings), "val_dense": metrics["dense"]["val_accuracy"],
            **{_val(k): magnitude[k]["val_accuracy"] for k in settings.prune.keep},
            "near_zero": metrics["history"][-1]["near_zero"], "train_seconds": round(metrics["train_seconds"], 2),
            "test_dense": metrics["dense"]["test_accuracy"], "test_at_target": magnitude[keep]["test_accuracy"]}


def _summary(row: dict[str, Any], keeps: Sequence[float]) -> str:
    psi = "" if row["psi"] is None else f" psi={row['psi']:.3g}"
    accs = " ".join(f"{100 * k:g}%:{100 * row[_val(k)]:.2f}" for k in keeps)
    return (f"point {row['point']} xi={row['xi']:.3g}{psi} ({row['epochs']} epochs): val dense "
            f"{100 * row['val_dense']:.2f}% | pruned {accs} | |w|<1e-3: {100 * row['near_zero']:.1f}%")
