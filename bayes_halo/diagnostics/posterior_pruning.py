"""Pruning by posterior criteria, beside MAP magnitude, at equal keep fractions.

Scores for :func:`bayes_halo.pruning.keep_masks` (larger = keep), per prunable weight:

* ``map-magnitude``: ``|w_map|``, the paper's one-shot criterion;
* ``posterior-magnitude``: ``|E[w | data]|``;
* ``snr``: ``|E w| / sd(w)``;
* ``inclusion``: ``1 - P(|w| < eps | data)``.  From ``S`` draws it takes only ``S + 1`` values, so
  ties are broken by SNR: ``score = inclusion + (2/pi) atan(snr) / (S + 1)``; the tie-breaker is
  below ``1/S``, the spacing of the inclusion values, so it never reorders distinct ones;
* ``group-inclusion`` (group priors only): ``1 - P(||w_g|| < eps | data)`` of the weight's group
  (:mod:`.group_posterior`).

With a group prior the per-weight criteria read the prunable tensors from the groupings' draws
(scattered into the member tensors).

Every mask is evaluated three ways: the MAP network pruned, the posterior-mean network pruned, and
the posterior predictive averaged over draws with the same mask applied to every draw.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..inference.svi import SVIResult, mean_prediction, predictive_probs
from ..models.bayesian import BayesianModule
from ..models.likelihoods import Bernoulli, Categorical, SequenceCategorical
from ..pruning import keep_masks, pruned_copy
from ..pruning.masks import By
from ..training.evaluate import accuracy_of_predictions
from .group_posterior import group_inclusion_scores, group_shrinkage
from .shrinkage import WeightShrinkage, weight_shrinkage

CRITERIA = ("map-magnitude", "posterior-magnitude", "snr", "inclusion")


def weight_sites(module: BayesianModule) -> tuple[str, ...]:
    """The tensors the per-weight diagnostics cover: the prior's sites, or with groups the prunable tensors."""
    return module.prunable if module.groupings else module.sites


def module_weight_shrinkage(module: BayesianModule, draws: Mapping[str, Tensor], map_values: Mapping[str, Tensor],
                            eps: float = 0.05, relative: bool = True) -> dict[str, WeightShrinkage]:
    """Per-weight diagnostics of :func:`weight_sites` from draws and MAP values keyed by latent site.

    A grouping's draws are scattered into its members; the learned per-weight coefficient only
    exists without groups.
    """
    if not module.groupings:
        return weight_shrinkage(draws, map_values, module.sites, module.prior, eps, relative)
    return weight_shrinkage(module.network_values(draws), module.network_values(map_values), weight_sites(module),
                            None, eps, relative)


def criterion_scores(shrinkage: Mapping[str, WeightShrinkage]) -> dict[str, dict[str, Tensor]]:
    """``{criterion: {site: score tensor}}`` for every criterion in :data:`CRITERIA`."""
    scores: dict[str, dict[str, Tensor]] = {criterion: {} for criterion in CRITERIA}
    for site, d in shrinkage.items():
        scores["map-magnitude"][site] = d.map_value.abs()
        scores["posterior-magnitude"][site] = d.mean.abs()
        scores["snr"][site] = d.snr
        tie_break = torch.atan(d.snr) * (2 / math.pi) / (d.num_draws + 1)
        scores["inclusion"][site] = (1 - d.p_small).double() + tie_break.double()
    return scores


@torch.no_grad()
def compare_criteria(module_map_values: Mapping[str, Tensor], svi_result: SVIResult, x_test: Tensor,
                     y_test: Tensor, keeps: Sequence[float], num_samples: int = 100, eps: float = 0.05,
                     relative: bool = True, by: By = "global", seed: int = 0) -> list[dict]:
    """Prune ``svi_result.module``'s prior-carrying weights by each criterion at each keep fraction.

    ``module_map_values``: MAP site values (e.g. ``module.site_values()`` after the MAP fit).
    ``eps``/``relative`` set the inclusion threshold (see :mod:`.shrinkage`).  The same
    ``num_samples`` draws (``seed``) serve every row.  One row per (keep, criterion): ``keep``,
    ``criterion``, ``kept_weights``, ``total_weights``, ``accuracy_map_net``,
    ``accuracy_posterior_mean_net``, ``accuracy_predictive`` (fractions in [0, 1]; for sequences, of next characters).
    """
    module = svi_result.module
    if not isinstance(module.likelihood, (Categorical, Bernoulli, SequenceCategorical)):
        raise ConfigError(f"pruning accuracy needs a classifier, not a {type(module.likelihood).__name__} likelihood")
    draws = svi_result.sample(num_samples, seed)
    scores = criterion_scores(module_weight_shrinkage(module, draws, module_map_values, eps, relative))
    if module.groupings:
        groups = group_shrinkage(draws, module_map_values, module.groupings, eps, relative)
        scores["group-inclusion"] = group_inclusion_scores(groups, module.groupings, scores["inclusion"])
    nets = {"map": _network(module, module_map_values), "posterior_mean": _network(module, svi_result.mean())}
    rows = []
    for keep in keeps:
        for criterion in scores:
            masks = keep_masks(scores[criterion], keep, by)
            row = {"keep": keep, "criterion": criterion, "kept_weights": sum(int(m.sum()) for m in masks.values()),
                   "total_weights": sum(m.numel() for m in masks.values())}
            for name, net in nets.items():
                out = pruned_copy(net, masks)(x_test)
                row[f"accuracy_{name}_net"] = accuracy_of_predictions(mean_prediction(module.likelihood, out), y_test)
            row["accuracy_predictive"] = accuracy_of_predictions(predictive_probs(module, draws, x_test, masks), y_test)
            rows.append(row)
    return rows


def best_criteria(rows: Sequence[Mapping], metric: str = "accuracy_predictive") -> list[dict]:
    """For each keep fraction, which criterion prunes best by ``metric``.

    Rows ``{keep, metric, best (tuple of the tied best criteria), accuracy, map_magnitude,
    gain_over_map}``; ``gain_over_map`` is the best accuracy minus that of MAP magnitude.
    """
    summary = []
    for keep in dict.fromkeys(row["keep"] for row in rows):
        at_keep = {row["criterion"]: row[metric] for row in rows if row["keep"] == keep}
        top = max(at_keep.values())
        summary.append({"keep": keep, "metric": metric,
                        "best": tuple(name for name, value in at_keep.items() if value == top),
                        "accuracy": top, "map_magnitude": at_keep["map-magnitude"],
                        "gain_over_map": top - at_keep["map-magnitude"]})
    return summary


def _network(module: BayesianModule, values: Mapping[str, Tensor]) -> nn.Module:
    """A copy of ``module.net`` holding the site ``values`` for its parameters."""
    net = copy.deepcopy(module.net)
    network = module.network_values(values)
    for name, param in net.named_parameters():
        param.copy_(network[name])
    return net
