"""Prune one trained network at many keep fractions and criteria, and evaluate each copy."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ..models.bayesian import BayesianModule
from .apply import pruned_copy
from .masks import keep_masks, magnitude_scores
from .report import sparsity_table

Evaluate = Callable[[nn.Module, Mapping[str, Tensor]], dict[str, float]]


def pruning_criteria(module: BayesianModule) -> dict[str, dict[str, Tensor]]:
    """Per-weight scores (larger = keep) for every criterion that applies to ``module``.

    ``"magnitude"``: ``|w_j|`` (the paper's criterion).  A prior with a per-weight learned
    coefficient ``c_j`` adds its ``coefficient_criterion`` (HALO: ``"halo-coefficient"``,
    ``c_j = xi / lambda_j^2``) with score ``-c_j``: keep the weights whose coefficient is smallest.
    """
    weights = {site: w.detach() for site, w in module.weights().items()}
    criteria = {"magnitude": magnitude_scores(weights)}
    prior = module.prior
    if prior is not None and prior.coefficient_criterion is not None:
        criteria[prior.coefficient_criterion] = {
            site: -prior.at(site).coefficient(module.hyper(site)[prior.coefficient_of].detach()) for site in weights}
    return criteria


def prune_sweep(net: nn.Module, criteria: Mapping[str, Mapping[str, Tensor]], keeps: Sequence[float],
                by: str, evaluate: Evaluate) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Evaluate a pruned copy of ``net`` for every (criterion, keep) pair.

    ``evaluate(pruned_net, masks)`` returns accuracy fields; returns (metric rows, per-layer
    sparsity rows).  Each row carries ``keep, criterion, kept_weights, total_weights``.
    """
    rows, layers = [], []
    for criterion, scores in criteria.items():
        for keep in keeps:
            masks = keep_masks(scores, keep, by=by)
            table = sparsity_table(masks)
            kept, total = sum(r["kept"] for r in table), sum(r["total"] for r in table)
            rows.append({"keep": keep, "criterion": criterion, "kept_weights": kept, "total_weights": total,
                         **evaluate(pruned_copy(net, masks), masks)})
            layers.extend({"keep": keep, "criterion": criterion, **r} for r in table)
    return rows, layers
