"""The one run-assembly path: load data, build the network and prior, run or reuse the pilot fit,
train, prune, evaluate, write.  ``fit``, ``path``, the study runner and the notebooks share it.

``run_fit(RunConfig(...), out_dir)`` is exactly what ``python -m bayes_halo.fit`` runs;
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
from .config import priors as config_priors
from .config.sections import RunConfig, TrainConfig, changed_settings
from .data import ArrayData, load_dataset
from .diagnostics.posterior_report import SCORES, SCORES_FORMAT, posterior_report
from .distributed import Runtime, distributed_runtime, local_runtime
from .errors import CheckpointError, ConfigError
from .models import build_model, prunable_parameters
from .models.bayesian import BayesianModule
from .priors import Prior
from .pruning import apply_masks, remove_masks
from .pruning.plot import plot_accuracy_vs_keep
from .pruning.structured import structured_sweep
from .pruning.sweep import prune_sweep, pruning_criteria
from .training.checkpoint import load_checkpoint, save_checkpoint
from .tasks import TASKS, Task
from .training.evaluate import split_score
from .training.trainer import train

CONFIG, CHECKPOINT, MODEL, METRICS, SPARSITY, PLOT = (
    "config.json", "checkpoint.pt", "model.pt", "metrics.json", "sparsity.csv", "accuracy_vs_keep.png")
PILOT = "pilot.pt"
MODEL_FORMAT = "bayes_halo-model-v1"


@dataclass
class FitResult:
    """A finished run: its settings, the trained module, the metrics, where it was saved."""

    config: RunConfig
    module: BayesianModule
    metrics: dict[str, Any]
    out_dir: Path | None = None
    input_shape: tuple[int, ...] | None = None  # ``(C, H, W)`` of one input image, ``(T,)`` of one sequence
    n_classes: int | None = None


@dataclass
class Pilot:
    """A dense pilot fit (the adaptive lasso's): its prunable weights and its whole network state."""

    weights: dict[str, torch.Tensor]
    state: dict[str, torch.Tensor]


def load_data(config: RunConfig) -> ArrayData:
    """The run's data set with its seeded validation split (and the configured CPU threads)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    data = config.data
    return load_dataset(data.dataset, data.data_dir, val_size=data.val_size, seed=config.seed,
                        download=data.download, subset=data.subset, augment=data.augment)


def build_prior(config: RunConfig, pilot: Pilot | None = None) -> Prior | None:
    """The prior the config names, with its strengths (and the pilot weights if it needs them)."""
    settings = config.prior
    return config_priors.build_prior(settings.prior_name, settings.strengths(), pilot.weights if pilot is not None else None,
                                     settings.gamma)


def build_module(config: RunConfig, input_shape: tuple[int, ...], n_classes: int, n_data: int,
                 pilot: Pilot | None = None, task: Task = TASKS["classification"]) -> BayesianModule:
    """A freshly initialised network (seeded) with the configured prior, groups and ``task``'s likelihood.

    ``n_data`` is the likelihood's ``N``: the number of training labels (``ArrayData.n_observations``);
    groups are traced on a zero input of ``task``'s input dtype.
    """
    torch.manual_seed(config.seed)
    net = build_model(config.model.model, tuple(input_shape), n_classes)
    return BayesianModule(net, build_prior(config, pilot), n_data=n_data, likelihood=task.likelihood(),
                          scope=config.prune.prune_scope, include_bias=config.prior.include_bias,
                          exclude=config.prune.exclude, positivity=config.train.positivity,
                          groups=config.prior.groups,
                          example_input=torch.zeros(1, *input_shape, dtype=task.input_dtype))


def data_module(config: RunConfig, data: ArrayData, pilot: Pilot | None = None) -> BayesianModule:
    """:func:`build_module` for ``data``: its input shape, classes, number of labels and task."""
    return build_module(config, data.input_shape, data.n_classes, data.n_observations, pilot, data.spec)


def pilot_fit(config: RunConfig, data: ArrayData, cache: Path | None = None, progress: bool = False,
              runtime: Runtime | None = None) -> Pilot | None:
    """The dense pilot fit of ``pilot_epochs`` (at least 1) when the prior needs one, cached in ``cache`` (by rank 0).

    Its ``weights`` are what the prior sees: the prunable tensors, or each grouping's ``[G, d]`` matrix.
    """
    if not config_priors.needs_pilot(config.prior.prior_name):
        return None
    if cache is not None and cache.exists():
        state = load_checkpoint(cache, required=("weights", "state"))
        return Pilot(state["weights"], state["state"])
    dense = config.replace(prior="none", epochs=max(1, config.prior.pilot_epochs))
    module = data_module(dense, data)
    train_module(dense, module, data, progress=progress, label="pilot", runtime=runtime)
    selected = ({site: module.site_value(site) for site in module.groupings} if module.groupings else
                prunable_parameters(module.net, config.prune.prune_scope, config.prior.include_bias,
                                    config.prune.exclude))
    pilot = Pilot({k: v.detach().clone() for k, v in selected.items()},
                  {k: v.detach().clone() for k, v in module.net.state_dict().items()})
    if cache is not None and (runtime is None or runtime.master_process):
        save_checkpoint(cache, {"weights": pilot.weights, "state": pilot.state})
    return pilot


def starting_module(config: RunConfig, data: ArrayData, pilot: Pilot | None) -> BayesianModule:
    """The module a run trains: fresh, or warm-started from the pilot fit's network."""
    module = data_module(config, data, pilot)
    if pilot is not None:
        module.net.load_state_dict(pilot.state)
    return module


def pilot_epochs_used(config: RunConfig) -> int:
    """Epochs the pilot fit adds to a run's budget (0 when the prior needs none)."""
    return max(1, config.prior.pilot_epochs) if config_priors.needs_pilot(config.prior.prior_name) else 0


def train_module(config: RunConfig, module: BayesianModule, data: ArrayData, checkpoint: Path | None = None,
                 resume: bool = False, progress: bool = False, label: str = "train", runtime: Runtime | None = None):
    """Train ``module`` with the run's training section (see :func:`bayes_halo.training.trainer.train`)."""
    return train(module, data, config.train, seed=config.seed, signature=config.training_signature(),
                 checkpoint=checkpoint, resume=resume, progress=progress, label=label, runtime=runtime)


def run_fit(config: RunConfig, out_dir: str | Path | None = None, resume: bool = False,
            overwrite: bool = False, progress: bool = True, data: ArrayData | None = None,
            runtime: Runtime | None = None) -> FitResult:
    """Train, prune at every keep fraction, evaluate, and (with ``out_dir``) write every output.

    ``runtime`` (default: :func:`~bayes_halo.distributed.distributed_runtime` of the config's
    ``device``: the caller's process group if one is up, torchrun's if its variables are set,
    else one process) says where to train.  With several ranks every rank trains; rank 0 alone
    evaluates, prunes and writes, and the other ranks' results hold only ``history``.
    """
    if runtime is None:
        with distributed_runtime(config.train.device) as runtime:
            return run_fit(config, out_dir, resume, overwrite, progress, data, runtime)
    out = Path(out_dir) if out_dir is not None else None
    resuming = resume and out is not None and (out / CHECKPOINT).exists()
    if out is not None:
        _prepare_out_dir(out, config, resume, overwrite, write=runtime.master_process)
        runtime.barrier()
    data = (data if data is not None else load_data(config)).to(runtime.device)
    progress = progress and runtime.master_process
    pilot = pilot_fit(config, data, out / PILOT if out else None, progress, runtime)
    module = starting_module(config, data, pilot)
    result = train_module(config, module, data, checkpoint=out / CHECKPOINT if out else None, resume=resuming,
                          progress=progress, runtime=runtime)
    if not runtime.master_process:
        return FitResult(config, module, {"history": result.history}, out, data.input_shape)
    metrics = evaluate_run(module, data, config, train_seconds=result.train_seconds, progress=progress)
    metrics["history"] = result.history
    if config.posterior.svi:
        metrics["posterior"] = posterior_report(module, data, config.posterior, config.prune, seed=config.seed,
                                                batch_size=config.train.batch_size, out=out, progress=progress)
    if out is not None:
        save_run(out, config, module, data, metrics, pilot)
    return FitResult(config, module, metrics, out, data.input_shape, data.n_classes)


def save_run(out: Path, config: RunConfig, module: BayesianModule, data: ArrayData, metrics: dict[str, Any],
             pilot: Pilot | None = None) -> None:
    """``model.pt`` (what :func:`load_run` reads), ``metrics.json``, ``sparsity.csv`` and the plot, atomically."""
    save_torch(out / MODEL, {"format": MODEL_FORMAT, "config": config.to_dict(),
                             "input_shape": list(data.input_shape), "n_classes": data.n_classes,
                             "n_data": data.n_observations, "task": data.task,
                             "module": {k: v.cpu() for k, v in module.state_dict().items()},
                             "pilot": pilot.weights if pilot else None})
    _write_outputs(out, metrics)


def evaluate_run(module: BayesianModule, data: ArrayData, config: RunConfig, train_seconds: float = float("nan"),
                 progress: bool = False) -> dict[str, Any]:
    """Dense and pruned ``val_<metric>``, ``test_<metric>`` in the ``metrics.json`` schema.

    The metric is the data set's (:mod:`bayes_halo.tasks`): ``accuracy`` (a fraction in [0, 1]) or
    ``bits_per_character``.
    """
    net, prune, metric = module.net, config.prune, data.spec.metric

    def evaluate(pruned: nn.Module, masks=None) -> dict[str, float]:
        return {f"val_{metric}": split_score(pruned, data, "val"), f"test_{metric}": split_score(pruned, data, "test")}

    criteria = pruning_criteria(module)
    rows, layers = prune_sweep(net, criteria, prune.keep, prune.prune_by, evaluate)
    if prune.finetune_epochs > 0:
        def finetuned(pruned: nn.Module, masks) -> dict[str, float]:
            return evaluate(finetune(net, masks, data, config, progress))
        ft_rows, ft_layers = prune_sweep(net, {"magnitude": criteria["magnitude"]}, prune.keep, prune.prune_by,
                                         finetuned)
        rows += [{**r, "criterion": "magnitude+finetune"} for r in ft_rows]
    for row in rows:
        row.update(scope=prune.prune_scope, by=prune.prune_by,
                   finetune_epochs=prune.finetune_epochs if row["criterion"].endswith("finetune") else 0)
    metrics = {"prior": config.prior.prior, "groups": config.prior.groups, "model": config.model.model,
               "dataset": config.data.dataset,
               "epochs": config.train.epochs, "seed": config.seed, "xi": config.prior.xi, "psi": config.prior.psi,
               "train_seconds": train_seconds, "n_train": data.n_train, "n_classes": data.n_classes,
               "data_source": data.source,
               **({"data_details": dict(data.details)} if data.details else {}), "task": data.task,
               "metric": metric, "version": __version__, "dense": evaluate(net), "pruned": rows, "sparsity": layers}
    if module.groupings:  # whole groups by norm and learned coefficient, measured after physical removal
        metrics["structured"] = structured_sweep(module, prune.keep, prune.prune_by, evaluate, data.input_shape,
                                                 example=data.prepare_batch(data.x_train[:16]))
    return metrics


def finetune(net: nn.Module, masks, data: ArrayData, config: RunConfig, progress: bool = False) -> nn.Module:
    """A copy of ``net`` with ``masks`` fixed, trained ``finetune_epochs`` on the likelihood alone."""
    tuned = copy.deepcopy(net)
    apply_masks(tuned, masks)
    settings: TrainConfig = replace(config.train, epochs=config.prune.finetune_epochs, lr=config.prune.finetune_lr,
                                    lambda_lr=None)
    train(BayesianModule(tuned, None, data.n_observations, likelihood=data.spec.likelihood()), data, settings,
          seed=config.seed, progress=progress, label="finetune", runtime=local_runtime(data.x_train.device))
    remove_masks(tuned)
    return tuned


def load_run(out_dir: str | Path) -> FitResult:
    """Load a finished run: its config, its trained module (from ``model.pt``) and metrics."""
    out = Path(out_dir)
    if not (out / MODEL).is_file():
        raise CheckpointError(f"no trained model at {out / MODEL}; run python -m bayes_halo.fit --out {out}")
    state = load_checkpoint(out / MODEL, format=MODEL_FORMAT)
    config = RunConfig.from_dict(state["config"])
    pilot = Pilot(state["pilot"], {}) if state.get("pilot") is not None else None
    task = TASKS[state.get("task", "classification")]  # runs of bayes_halo <= 0.2 are classifiers
    module = build_module(config, tuple(state["input_shape"]), state["n_classes"], state["n_data"], pilot, task)
    try:
        module.load_state_dict(state["module"])
    except RuntimeError as err:
        raise CheckpointError(f"{out / MODEL} does not fit a {config.model.model} network: {err}") from None
    metrics = json.loads((out / METRICS).read_text()) if (out / METRICS).exists() else {}
    return FitResult(config, module, metrics, out, tuple(state["input_shape"]), state["n_classes"])


def run_criteria(run: FitResult) -> dict[str, dict[str, torch.Tensor]]:
    """Every pruning criterion a saved run can compute: its module's (``magnitude``, the prior's
    coefficient) and, when it has a posterior (``fit --svi``), the posterior ones saved beside it."""
    criteria = pruning_criteria(run.module)
    if run.out_dir is not None and (run.out_dir / SCORES).is_file():
        saved = load_checkpoint(run.out_dir / SCORES, required=("scores",), format=SCORES_FORMAT)["scores"]
        criteria.update(saved, **{"map-magnitude": criteria["magnitude"]})
    return criteria


def _prepare_out_dir(out: Path, config: RunConfig, resume: bool, overwrite: bool, write: bool = True) -> None:
    """Refuse to clobber a saved run; on resume, refuse a different configuration.

    Every rank checks; only the one with ``write`` (rank 0) deletes and writes ``config.json``.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose another `out`")
    existing = [name for name in (CHECKPOINT, MODEL, METRICS, PILOT) if (out / name).exists()]
    if resume:
        if not any((out / name).exists() for name in (CONFIG, CHECKPOINT, PILOT)):
            raise ConfigError(f"nothing to resume in {out}: no run was started there; drop `resume` to start one, "
                              "or give the `out` of an interrupted run")
        if (out / CONFIG).exists():
            saved = RunConfig.from_dict(json.loads((out / CONFIG).read_text())).training_signature()
            changed = changed_settings(saved, config.training_signature())
            if changed:
                raise CheckpointError(f"cannot resume {out}: settings differ from the saved run's (saved -> now): "
                                      f"{changed}; give the saved values, or start a new run without `resume`")
    elif existing and not overwrite:
        raise ConfigError(f"{out} already holds a run ({', '.join(existing)}); pass `resume` to continue it "
                          "or `overwrite` to replace it, or choose another `out`")
    if not write:
        return
    if existing and not resume:
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
    metric = f"test_{metrics['metric']}"
    save_figure(out / PLOT, plot_accuracy_vs_keep(metrics["pruned"], metrics["dense"][metric], metric, title=title))
