"""Structured pruning: rank whole groups (units, channels, heads), keep an exact number, zero the rest.

Scores (larger = keep), one ``[G]`` tensor per grouping:

* ``"norm"``: the size-normalised norm ``||w_g||_p / d^(1/p)`` (``p = 2``; ``p = 1`` is the
  L1-norm filter ranking of Li et al. 2017, as a mean ``|w|``), comparable across groupings of
  different sizes ``d``;
* ``"coefficient"``: the prior's learned per-group lasso coefficient (group HALO: score
  ``-xi / lambda_g^2``): keep the groups whose coefficient is smallest;
* ``"posterior"``: ``-P(||w_g|| < eps | data)`` when a group posterior supplies those probabilities.

:func:`keep_groups` keeps exactly ``k`` groups (globally by score, or a fraction per grouping),
never fewer than one per grouping (a layer cannot be empty); :func:`group_masks` turns kept groups
into per-tensor keep masks for :func:`~bayes_halo.pruning.pruned_copy`; :func:`keep_within_macs`
finds the largest ``k`` whose exported network fits a multiply-add budget; :func:`structured_report`
measures what the masks buy after physical removal (units, parameters, multiply-adds per layer).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..groups import Grouping
from .apply import pruned_copy
from .masks import keep_count

Scores = Mapping[str, Tensor]


def norm_scores(groupings: Sequence[Grouping], tensors: Mapping[str, Tensor], p: float = 2.0) -> dict[str, Tensor]:
    """``||w_g||_p / d^(1/p)`` per group of each grouping."""
    return {g.name: torch.linalg.vector_norm(g.matrix(tensors).detach(), ord=p, dim=1) / g.size ** (1 / p)
            for g in groupings}


def group_criteria(module: Any, posterior: Scores | None = None) -> dict[str, dict[str, Tensor]]:
    """Every criterion that applies to a BayesianModule with groupings: ``{criterion: {grouping: scores}}``.

    ``posterior``: ``{grouping: P(||w_g|| < eps | data)}`` (``[G]`` each), when a posterior gave them.
    """
    groupings = list(module.groupings.values())
    if not groupings:
        raise ConfigError("structured pruning needs `groups` (e.g. unit); this run has per-weight sites")
    criteria = {"norm": norm_scores(groupings, dict(module.net.named_parameters()))}
    prior = module.prior
    if prior is not None and prior.coefficient_of is not None:
        criteria["coefficient"] = {
            g.name: -prior.coefficient(module.hyper(g.name)[prior.coefficient_of].detach(), g.size) for g in groupings}
    if posterior is not None:
        criteria["posterior"] = {name: -p for name, p in posterior.items()}
    return criteria


def keep_groups(scores: Scores, keep: int | float, by: str = "global") -> dict[str, Tensor]:
    """Boolean ``[G]`` keep vectors keeping exactly ``keep`` groups (an int) or that fraction (a float in (0, 1]).

    ``by="global"``: the best-scored groups over all groupings (ties: the earlier grouping and
    group first), after one group per grouping (its best) is kept unconditionally (a fraction
    keeps at least that many; a count below it is an error).
    ``by="layer"``: the fraction (or count) within each grouping.
    """
    total = sum(int(s.numel()) for s in scores.values())
    if by == "layer":
        return {name: _top(s, _count(keep, s.numel())) for name, s in scores.items()}
    if by != "global":
        raise ConfigError(f"unknown `prune_by` {by!r}: choose 'global' or 'layer'")
    k = _count(keep, total)
    if isinstance(keep, float):
        k = max(k, len(scores))
    if k < len(scores):
        raise ConfigError(f"keeping {k} groups leaves a layer empty: keep at least {len(scores)} (one per grouping)")
    kept = {name: _top(s, 1) for name, s in scores.items()}
    flat = torch.cat([torch.where(kept[name], math.inf, s.detach().double().cpu()) for name, s in scores.items()])
    order = torch.sort(flat, descending=True, stable=True).indices[:k]
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[order] = True
    return dict(zip(scores, chosen.split([int(s.numel()) for s in scores.values()])))


def _count(keep: int | float, n: int) -> int:
    """``keep`` groups out of ``n``: an int as given (checked), a float by :func:`keep_count`."""
    if isinstance(keep, bool) or not isinstance(keep, (int, float)):
        raise ConfigError(f"`keep` must be a number of groups or a fraction, got {keep!r}")
    if isinstance(keep, int):
        if not 1 <= keep <= n:
            raise ConfigError(f"cannot keep {keep} of {n} groups")
        return keep
    return keep_count(keep, n)


def _top(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` largest entries (stable: earlier first among ties)."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[torch.sort(scores.detach().double().cpu(), descending=True, stable=True).indices[:k]] = True
    return mask


def group_masks(groupings: Sequence[Grouping], kept: Mapping[str, Tensor],
                tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Boolean keep masks for every member tensor: group ``g``'s entries follow ``kept[grouping][g]``."""
    masks: dict[str, Tensor] = {}
    for g in groupings:
        rows = kept[g.name].to(torch.float64)[:, None].expand(g.n_groups, g.size)
        for name, value in g.scatter(rows).items():
            masks[name] = value.to(device=tensors[name].device) > 0
    return masks


def structured_report(masked: nn.Module, input_shape: tuple[int, ...], example: Tensor | None = None) -> dict[str, Any]:
    """A masked network after physical removal: per layer units, parameters, multiply-adds per example."""
    from ..export import export_network  # export imports the pipeline, which imports pruning

    exported = export_network(masked, tuple(input_shape), example)
    before, after = exported.before, exported.after
    return {"units": [r["units"] for r in after["layers"]], "units_before": [r["units"] for r in before["layers"]],
            "layers": [r["layer"] for r in after["layers"]], "parameters": after["parameters"],
            "parameters_before": before["parameters"], "macs": after["macs"], "macs_before": before["macs"]}


def keep_within_macs(net: nn.Module, groupings: Sequence[Grouping], scores: Scores, input_shape: tuple[int, ...],
                     max_macs: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The most groups, best first, whose exported network needs at most ``max_macs`` multiply-adds.

    Only groupings whose groups are whole units of the layer before are ranked (an input-unit
    grouping of a Linear fed by a flattened feature map, or by the network's input, is always
    kept: export removes channels, not single features, and never the inputs; a channel whose
    features all die goes with its producer).  Scores are compared across groupings relative to
    their grouping's mean, ``s_g / mean_g' |s_g'|`` (so that groupings of different scale and
    size compete on how each group compares with its layer), and kept in that order by
    bisection on their number ``k`` (MACs grow with ``k``: the kept sets are nested).  Returns
    the masks and :func:`structured_report` with ``groups_kept``; ConfigError when one group per
    ranked grouping is already over.
    """
    from ..export.cost import layer_costs  # export imports the pipeline, which imports pruning

    tensors = dict(net.named_parameters())
    rows = layer_costs(net, torch.zeros(1, *input_shape, dtype=next(net.parameters()).dtype,
                                        device=next(net.parameters()).device))
    produced = {row["layer"]: (rows[i - 1]["units"] if i else None) for i, row in enumerate(rows)}
    free = {g.name for g in groupings if g.kind == "input-unit" and all(
        m.dim == 1 and produced.get(m.name.rsplit(".", 1)[0], 0) != g.n_groups for m in g.members)}
    ranked = {name: s / s.abs().mean().clamp_min(torch.finfo(s.dtype).tiny)
              for name, s in scores.items() if name not in free}
    always = {name: torch.ones(scores[name].numel(), dtype=torch.bool) for name in free}

    def measure(k: int) -> tuple[dict[str, Tensor], dict[str, Any]]:
        masks = group_masks(groupings, {**always, **keep_groups(ranked, k)}, tensors)
        return masks, structured_report(pruned_copy(net, masks), input_shape)

    low, high = len(ranked), sum(int(s.numel()) for s in ranked.values())
    best = measure(low)
    if best[1]["macs"] > max_macs:
        raise ConfigError(f"one group per grouping already needs {best[1]['macs']:,} multiply-adds > {max_macs:,}")
    while low < high:
        mid = (low + high + 1) // 2
        candidate = measure(mid)
        if candidate[1]["macs"] <= max_macs:
            low, best = mid, candidate
        else:
            high = mid - 1
    best[1]["groups_kept"] = low + sum(int(a.numel()) for a in always.values())
    return best


def structured_sweep(module: Any, keeps: Sequence[float], by: str, evaluate: Callable[[nn.Module], dict[str, float]],
                     input_shape: tuple[int, ...], posterior: Scores | None = None,
                     example: Tensor | None = None) -> list[dict[str, Any]]:
    """One row per (criterion, keep fraction of groups): groups kept, units per layer, parameters, MACs, accuracy.

    ``example``: a batch of real inputs for the export's trace (see :func:`~bayes_halo.export.export_network`).
    """
    groupings = list(module.groupings.values())
    tensors = dict(module.net.named_parameters())
    rows = []
    for criterion, scores in group_criteria(module, posterior).items():
        for keep in keeps:
            kept = keep_groups(scores, float(keep), by)
            masked = pruned_copy(module.net, group_masks(groupings, kept, tensors)).eval()
            rows.append({"keep": keep, "criterion": criterion, "by": by,
                         "groups_kept": sum(int(k.sum()) for k in kept.values()),
                         "groups_total": sum(int(k.numel()) for k in kept.values()),
                         **structured_report(masked, input_shape, example), **evaluate(masked)})
    return rows
