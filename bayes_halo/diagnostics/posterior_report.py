"""The Bayesian half of ``fit --svi``: the posterior beside the MAP fit it starts from.

Runs SVI (mean-field Gaussian, started at the MAP values), summarises shrinkage per layer,
prunes by posterior criteria beside MAP magnitude at the same keep fractions, and writes
``posterior.nc`` and the diagnostic plots.  ``posterior.nc`` is an ordinary ArviZ result: its
``posterior`` group holds the draws of the sites in ``keep_draws`` in full (``"all"``: every
site) and of every other site (weights and hyper-variables alike) ``posterior_entries`` entries,
evenly spaced along each dim; ``posterior_summary`` holds mean, sd, q05, q95 of every entry;
``sample_stats`` the -ELBO per step.  With a group prior it also holds, in full, the draws of each
grouping's group norms ``<site>_norm`` and of ``<site>_small`` (``||w_g|| < eps``), whose
posterior-summary mean is ``P(||w_g|| < eps | data)`` per group (:mod:`.group_posterior`).
``posterior_forest_<site>.png`` shows each site's stored entries (ArviZ's forest plot; a grouping's ``:``
is written ``-`` in the file name, which Windows file systems refuse).
``posterior_scores.pt`` holds the posterior pruning criteria's per-weight scores, so
``python -m bayes_halo.export --criterion snr`` prunes exactly as the run compared.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..atomic import save_figure, save_torch
from ..data import ArrayData
from ..inference.svi import fit_svi
from ..models.bayesian import BayesianModule
from ..pruning import keep_masks, magnitude_scores
from ..config.sections import PosteriorConfig, PruneConfig
from . import arviz_compat
from .arviz_export import save_inference_data, site_dims, svi_inference_data
from .group_posterior import group_posterior_variables, group_shrinkage, group_summary
from .plots import (plot_accuracy_vs_keep, plot_hyper_histograms, plot_layer_shrinkage, plot_map_vs_posterior,
                    plot_posterior_forest)
from .posterior_pruning import (CRITERIA, best_criteria, compare_criteria, criterion_scores, module_weight_shrinkage,
                                weight_sites)
from .shrinkage import layer_summary

POSTERIOR = "posterior.nc"
SCORES, SCORES_FORMAT = "posterior_scores.pt", "bayes_halo-posterior-scores-v1"
#: the posterior criteria a run with a posterior adds to export's choices (map-magnitude is ``magnitude``)
POSTERIOR_CRITERIA = tuple(c for c in CRITERIA if c != "map-magnitude")
PLOTS = ("shrinkage_forest.png", "map_vs_posterior.png", "lambda_histograms.png", "posterior_accuracy_vs_keep.png")
#: per layer: ArviZ's forest plot of the layer's weight entries stored in posterior.nc
FOREST = "posterior_forest_{site}.png"


def posterior_report(module: BayesianModule, data: ArrayData, config: PosteriorConfig, prune: PruneConfig,
                     seed: int = 0, batch_size: int = 100, out: Path | None = None,
                     progress: bool = False) -> dict[str, Any]:
    """SVI from ``module``'s MAP values; returns the ``metrics.json`` section ``"posterior"``.

    Posterior pruning is compared with MAP magnitude at ``prune.keep``; SVI uses mini-batches of
    ``batch_size`` and ``seed``.
    """
    map_values = module.site_values()
    x_train, x_test = data.prepare_batch(data.x_train), data.prepare_batch(data.x_test)  # normalised, not augmented
    svi = fit_svi(module, x_train, data.y_train, epochs=config.svi_epochs, batch_size=batch_size,
                  lr=config.svi_lr, seed=seed, progress=progress)
    rows = compare_criteria(map_values, svi, x_test, data.y_test, prune.keep,
                            num_samples=config.svi_samples, by=prune.prune_by, seed=seed)
    draws = svi.sample(config.svi_samples, seed=seed)
    shrinkage = module_weight_shrinkage(module, draws, map_values)
    groups = group_shrinkage(draws, map_values, module.groupings)
    best = best_criteria(rows)
    if out is not None:
        scores = criterion_scores(shrinkage)
        save_torch(out / SCORES, {"format": SCORES_FORMAT, "scores": {
            criterion: {site: s.cpu() for site, s in scores[criterion].items()} for criterion in POSTERIOR_CRITERIA}})
        _write(out, module, svi, {**draws, **group_posterior_variables(groups)}, map_values, rows, config, prune,
               seed)
    section = {"method": "svi (mean-field Gaussian from the MAP)", "epochs": config.svi_epochs, "lr": config.svi_lr,
               "num_samples": config.svi_samples, "neg_elbo_per_epoch": svi.epoch_losses,
               "layers": layer_summary(shrinkage), "pruning": rows,
               "best": [{**b, "best": list(b["best"])} for b in best]}
    if groups:
        section["groups"] = group_summary(groups, module.groupings)
    return section


def format_posterior(section: dict[str, Any]) -> str:
    """Console lines: the per-layer shrinkage table, then, per keep fraction, which criterion prunes best."""
    lines = ["", f"posterior ({section['method']}, {section['epochs']} epochs, {section['num_samples']} draws)",
             *format_layers(section["layers"]), "",
             "test accuracy of the posterior predictive after pruning by each criterion:"]
    for row in section["best"]:
        winner = "MAP magnitude" if "map-magnitude" in row["best"] else " / ".join(row["best"])
        lines.append(f"  keep {100 * row['keep']:6.2f}%: {winner} prunes best ({100 * row['accuracy']:.2f}%; "
                     f"MAP magnitude {100 * row['map_magnitude']:.2f}%, gain {100 * row['gain_over_map']:+.2f} points)")
    return "\n".join(lines)


def format_layers(rows: list[dict[str, Any]]) -> list[str]:
    """The per-layer shrinkage table (``metrics.json``'s ``posterior.layers``), one line per layer."""
    coefficient = any(r["median_coefficient"] is not None for r in rows)
    width = max(len("layer"), *(len(r["layer"]) for r in rows))
    head = (f"  {'layer':<{width}} {'weights':>9} {'mean|w| MAP':>12} {'mean|Ew-MAP|':>13} {'mean sd':>9} "
            f"{'median SNR':>11} {'P(|w|<eps)':>11}" + (f" {'median xi/lambda^2':>19}" if coefficient else ""))
    lines = ["per-layer shrinkage (eps: 5 % of the layer's MAP RMS; P(|w|<eps): mean over the layer's weights)",
             head]
    for r in rows:
        line = (f"  {r['layer']:<{width}} {r['n_weights']:>9,} {r['mean_abs_map']:>12.3g} {r['mean_abs_shift']:>13.3g} "
                f"{r['mean_sd']:>9.3g} {r['median_snr']:>11.3g} {r['mean_p_small']:>11.3f}")
        if coefficient:
            line += f" {r['median_coefficient']:>19.3g}" if r["median_coefficient"] is not None else f" {'-':>19}"
        lines.append(line)
    return lines


def _write(out: Path, module: BayesianModule, svi, draws, map_values, rows, config: PosteriorConfig,
           prune: PruneConfig, seed: int) -> None:
    """posterior.nc and the four diagnostic plots, each written atomically."""
    group_variables = [name for site in module.groupings for name in (f"{site}_norm", f"{site}_small")]
    keep = list(draws) if "all" in config.keep_draws else [*config.keep_draws, *group_variables]
    idata = svi_inference_data(draws, svi.losses, dims=site_dims(module), keep_draws=keep,
                               max_entries=config.posterior_entries)
    save_inference_data(idata, out / POSTERIOR)
    stored = arviz_compat.group(idata, "posterior").data_vars
    for site in module.sites:
        if site in stored:
            save_figure(out / FOREST.format(site=site.replace(":", "-")), plot_posterior_forest(idata, site))
    weight_draws, map_network = module.network_values(draws), module.network_values(map_values)
    weights = {site: weight_draws[site] for site in weight_sites(module)}
    map_weights = {site: map_network[site] for site in weight_sites(module)}
    save_figure(out / PLOTS[0], plot_layer_shrinkage({"SVI": weights}, map_weights))
    smallest = min(prune.keep)
    mask = keep_masks(magnitude_scores(map_weights), smallest, by=prune.prune_by)
    save_figure(out / PLOTS[1], plot_map_vs_posterior(map_weights, module.network_values(svi.mean()), mask))
    key, mean = module.prior.coefficient_of, svi.mean()
    hyper = {module.hyper_names[site][key]: mean[module.hyper_names[site][key]] for site in module.sites} if key else {}
    if hyper:
        save_figure(out / PLOTS[2], plot_hyper_histograms(hyper, xlabel="posterior mean of lambda"))
    test_rows = [{"keep": r["keep"], "criterion": r["criterion"], "test_accuracy": r["accuracy_predictive"]}
                 for r in rows]
    save_figure(out / PLOTS[3], plot_accuracy_vs_keep(test_rows, title="Posterior predictive after pruning"))
    torch.manual_seed(seed)  # leave the global generator as the rest of the run expects
