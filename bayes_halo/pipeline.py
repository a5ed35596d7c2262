"""The whole ``fit`` job as Python functions: train with a prior, prune, evaluate, save, load.

``run_fit(FitConfig(...), out_dir)`` is exactly what ``python -m bayes_halo.fit`` runs;
``load_run(out_dir)`` gives back the trained module, its config and its metrics.
"""
from __future__ import annotations

import copy
import csv
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .atomic import save_figure, save_torch, write_json, write_text
from .data import ArrayData, load_dataset
from .diagnostics.posterior_report import posterior_report
from .errors import CheckpointError, ConfigError
from .models import build_model, prunable_parameters
from .models.bayesian import BayesianModule
from .priors import Prior, prior_class
from .priors.laplace import AdaptiveLaplace
from .pruning import apply_masks, remove_masks
from .pruning.plot import plot_accuracy_vs_keep
from .pruning.sweep import prune_sweep, pruning_criteria
from .training.checkpoint import load_checkpoint, save_checkpoint
from .training.config import FitConfig
from .training.evaluate import accuracy
from .training.trainer import train

CONFIG, CHECKPOINT, MODEL, METRICS, SPARSITY, PLOT = (
    "config.json", "checkpoint.pt", "model.pt", "metrics.json", "sparsity.csv", "accuracy_vs_keep.png")
PILOT = "pilot.pt"


@dataclass
class FitResult:
    """A finished run: its settings, the trained module, the metrics, where it was saved."""

    config: FitConfig
    module: BayesianModule
    metrics: dict[str, Any]
    out_dir: Path | None = None


def build_prior(config: FitConfig, pilot: dict[str, torch.Tensor] | None = None) -> Prior | None:
    """The prior named by ``config`` with its strengths (the adaptive one needs pilot weights)."""
    cls = prior_class(config.prior)
    if cls is None:
        return None
    if cls is AdaptiveLaplace:
        if pilot is None:
            raise ConfigError("the adaptive Laplace prior needs pilot weights")
        return AdaptiveLaplace.from_pilot(config.xi, pilot, gamma=config.gamma)
    if config.prior == "halo":
        return cls(config.xi, config.psi, lambda_decay=config.lambda_decay)
    if config.prior == "shared-halo":
        return cls(config.xi, config.psi)
    return cls(config.xi)


def build_module(config: FitConfig, input_shape: tuple[int, ...], n_classes: int, n_data: int,
                 pilot: dict[str, torch.Tensor] | None = None) -> BayesianModule:
    """A freshly initialised network (seeded) with the configured prior."""
    torch.manual_seed(config.seed)
    net = build_model(config.model, tuple(input_shape), n_classes)
    return BayesianModule(net, build_prior(config, pilot), n_data=n_data, scope=config.prune_scope,
                          include_bias=config.include_bias, exclude=config.exclude, positivity=config.positivity)


def run_fit(config: FitConfig, out_dir: str | Path | None = None, resume: bool = False,
            overwrite: bool = False, progress: bool = True, data: ArrayData | None = None) -> FitResult:
    """Train, prune at every keep fraction, evaluate, and (with ``out_dir``) write every output."""
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        _prepare_out_dir(out, config, resume, overwrite)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if data is None:
        data = load_dataset(config.dataset, config.data_dir, val_size=config.val_size, seed=config.seed,
                            download=config.download, subset=config.subset)
    pilot = _pilot_weights(config, data, out, progress) if config.prior == "adaptive-laplace" else None
    module = build_module(config, data.input_shape, data.n_classes, data.n_train,
                          pilot["weights"] if pilot else None)
    if pilot is not None:
        module.net.load_state_dict(pilot["state"])  # warm start from the pilot fit
    result = train(module, data, config, checkpoint=out / CHECKPOINT if out else None,
                   resume=resume and out is not None and (out / CHECKPOINT).exists(), progress=progress)
    metrics = evaluate_run(module, data, config, train_seconds=result.train_seconds, progress=progress)
    metrics["history"] = result.history
    if config.svi:
        if module.prior is None:
            raise ConfigError("--svi needs a prior: the posterior under a flat prior is not proper")
        metrics["posterior"] = posterior_report(module, data, config, out, progress)
    if out is not None:
        save_torch(out / MODEL, {"format": "bayes_halo-model-v1", "config": config.to_dict(),
                                 "input_shape": list(data.input_shape), "n_classes": data.n_classes,
                                 "n_data": data.n_train, "module": module.state_dict(),
                                 "pilot": pilot["weights"] if pilot else None})
        _write_outputs(out, metrics)
    return FitResult(config, module, metrics, out)


def evaluate_run(module: BayesianModule, data: ArrayData, config: FitConfig, train_seconds: float = float("nan"),
                 progress: bool = False) -> dict[str, Any]:
    """Dense and pruned accuracies (fractions in [0, 1]) in the ``metrics.json`` schema."""
    net = module.net

    def evaluate(pruned: nn.Module, masks=None) -> dict[str, float]:
        return {"val_accuracy": accuracy(pruned, data.x_val, data.y_val),
                "test_accuracy": accuracy(pruned, data.x_test, data.y_test)}

    criteria = pruning_criteria(module)
    rows, layers = prune_sweep(net, criteria, config.keep, config.prune_by, evaluate)
    if config.finetune_epochs > 0:
        def finetuned(pruned: nn.Module, masks) -> dict[str, float]:
            return evaluate(finetune(net, masks, data, config, progress))
        ft_rows, ft_layers = prune_sweep(net, {"magnitude": criteria["magnitude"]}, config.keep,
                                         config.prune_by, finetuned)
        rows += [{**r, "criterion": "magnitude+finetune"} for r in ft_rows]
    for row in rows:
        row.update(scope=config.prune_scope, by=config.prune_by,
                   finetune_epochs=config.finetune_epochs if row["criterion"].endswith("finetune") else 0)
    return {"prior": config.prior, "model": config.model, "dataset": config.dataset, "epochs": config.epochs,
            "seed": config.seed, "xi": config.xi, "psi": config.psi, "train_seconds": train_seconds,
            "n_train": data.n_train, "data_source": data.source, "version": __version__,
            "dense": evaluate(net), "pruned": rows, "sparsity": layers}


def finetune(net: nn.Module, masks, data: ArrayData, config: FitConfig, progress: bool = False) -> nn.Module:
    """A copy of ``net`` with ``masks`` fixed, trained ``finetune_epochs`` on the likelihood alone."""
    tuned = copy.deepcopy(net)
    apply_masks(tuned, masks)
    settings = replace(config, prior="none", xi=None, psi=None, epochs=config.finetune_epochs,
                       lr=config.finetune_lr, lambda_lr=None)
    train(BayesianModule(tuned, None, data.n_train), data, settings, progress=progress, label="finetune")
    remove_masks(tuned)
    return tuned


def load_run(out_dir: str | Path) -> FitResult:
    """Load a finished run: its config, its trained module (from ``model.pt``) and metrics."""
    out = Path(out_dir)
    state = load_checkpoint_file(out / MODEL)
    config = FitConfig.from_dict(state["config"])
    module = build_module(config, tuple(state["input_shape"]), state["n_classes"], state["n_data"],
                          state.get("pilot"))
    try:
        module.load_state_dict(state["module"])
    except RuntimeError as err:
        raise CheckpointError(f"{out / MODEL} does not fit a {config.model} network: {err}") from None
    metrics = json.loads((out / METRICS).read_text()) if (out / METRICS).exists() else {}
    return FitResult(config, module, metrics, out)


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """Read ``model.pt`` with the same validation as training checkpoints."""
    if not path.is_file():
        raise CheckpointError(f"no trained model at {path}; run python -m bayes_halo.fit --out {path.parent}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is corrupt or unreadable ({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != "bayes_halo-model-v1":
        raise CheckpointError(f"{path} is not a bayes_halo model file")
    return state


def _pilot_weights(config: FitConfig, data: ArrayData, out: Path | None, progress: bool) -> dict[str, Any]:
    """Dense (no-prior) pilot fit for the adaptive Laplace prior, cached in ``pilot.pt``."""
    if out is not None and (out / PILOT).exists():
        return load_checkpoint(out / PILOT, required=("weights", "state"))
    pilot_config = replace(config, prior="none", xi=None, psi=None, epochs=max(1, config.pilot_epochs))
    module = build_module(pilot_config, data.input_shape, data.n_classes, data.n_train)
    train(module, data, pilot_config, progress=progress, label="pilot")
    selected = prunable_parameters(module.net, config.prune_scope, config.include_bias, config.exclude)
    pilot = {"weights": {k: v.detach().clone() for k, v in selected.items()},
             "state": {k: v.detach().clone() for k, v in module.net.state_dict().items()}}
    if out is not None:
        save_checkpoint(out / PILOT, pilot)
    return pilot


def _prepare_out_dir(out: Path, config: FitConfig, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a saved run; on resume, refuse a different configuration."""
    existing = [name for name in (CHECKPOINT, MODEL, METRICS, PILOT) if (out / name).exists()]
    if resume:
        if (out / CONFIG).exists():
            settings = json.loads((out / CONFIG).read_text())
            settings.pop("version", None)
            saved = FitConfig.from_dict(settings)
            if saved.training_signature() != config.training_signature():
                changed = sorted(k for k, v in config.training_signature().items()
                                 if saved.training_signature().get(k) != v)
                raise CheckpointError(f"cannot resume {out}: it was started with different {changed}")
    elif existing and not overwrite:
        raise ConfigError(f"{out} already holds a run ({', '.join(existing)}); pass --resume to continue it "
                          "or --overwrite to replace it, or choose another --out")
    elif existing:
        for name in existing:
            (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG, {**config.to_dict(), "version": __version__})


def _write_outputs(out: Path, metrics: dict[str, Any]) -> None:
    """metrics.json, sparsity.csv and accuracy_vs_keep.png, each written atomically."""
    write_json(out / METRICS, metrics)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["keep", "criterion", "layer", "total", "kept", "fraction"])
    writer.writeheader()
    writer.writerows(metrics["sparsity"])
    write_text(out / SPARSITY, buffer.getvalue())
    title = f"{metrics['prior']} prior, {metrics['model']} on {metrics['dataset']}"
    save_figure(out / PLOT, plot_accuracy_vs_keep(metrics["pruned"], metrics["dense"]["test_accuracy"], title=title))
