r"""Group-level posterior: is a whole unit (channel, head) negligible?

From ``S`` draws of a grouping's matrix ``W`` (``[S, G, d]``, SVI or NUTS) and its MAP value:

* the posterior of the group norm ``||w_g||``: its draws, mean, sd;
* ``p_small_g = (1/S) #{s : ||w_g^(s)|| < eps}``, an estimate of ``P(||w_g|| < eps | data)``
  (Monte-Carlo sd at most ``0.5 / sqrt(S)``).

The threshold is relative by default, as for single weights (:mod:`.shrinkage`):
``eps = eps_rel * rms_g(||w_map_g||)``, "below 5 % of the grouping's typical MAP group norm".
For large groups the Gamma(2d+1) hyperprior is tight, so these, not the posterior of
``lambda_g``, say whether a unit is dead (halo-math.md, "Groups").

Pruning criterion ``group-inclusion``: every weight of group ``g`` scores
``1 - p_small_g + (2/pi) atan(snr_g) / (S + 1)``, ``snr_g = E||w_g|| / sd(||w_g||)`` breaking ties
below the spacing ``1/S`` of the inclusion values; weights in no grouping keep their per-weight
inclusion score (:mod:`.posterior_pruning`).  Whole groups then go together, except at most one
group split at a keep fraction's boundary.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from ..groups import Grouping


@dataclass(frozen=True)
class GroupShrinkage:
    """Posterior of one grouping's group norms; every tensor is ``[G]`` (``norms``: ``[S, G]``)."""

    map_norm: Tensor
    norms: Tensor
    mean: Tensor
    sd: Tensor
    p_small: Tensor
    eps: float

    @property
    def snr(self) -> Tensor:
        """``E||w_g|| / sd(||w_g||)`` (``inf`` where the sd is 0 and the mean is not)."""
        return torch.where(self.sd > 0, self.mean / self.sd, torch.where(self.mean > 0, math.inf, 0.0))

    @property
    def small(self) -> Tensor:
        """``[S, G]`` indicators ``||w_g^(s)|| < eps``: their mean over draws is ``p_small``."""
        return (self.norms < self.eps).to(self.norms.dtype)


def group_shrinkage(draws: Mapping[str, Tensor], map_values: Mapping[str, Tensor],
                    groupings: Mapping[str, Grouping], eps: float = 0.05,
                    relative: bool = True) -> dict[str, GroupShrinkage]:
    """Group-norm posteriors of every grouping from ``draws[site]`` (``[S, G, d]``) and ``map_values[site]`` (``[G, d]``)."""
    if not eps > 0:
        raise ConfigError(f"need eps > 0, got {eps}")
    result = {}
    for site in groupings:
        w = draws[site]
        if len(w) < 2:
            raise ConfigError(f"need at least 2 posterior draws of {site!r}, got {len(w)}")
        map_norm = torch.linalg.vector_norm(map_values[site].detach().to(w.dtype), dim=-1)
        threshold = eps * map_norm.pow(2).mean().sqrt().item() if relative else eps
        norms = torch.linalg.vector_norm(w, dim=-1)
        result[site] = GroupShrinkage(map_norm=map_norm, norms=norms, mean=norms.mean(0), sd=norms.std(0),
                                      p_small=(norms < threshold).to(w.dtype).mean(0), eps=threshold)
    return result


def inclusion_score(p_small: Tensor, snr: Tensor, num_draws: int) -> Tensor:
    """``1 - p_small + (2/pi) atan(snr) / (S + 1)`` per group (float64): larger = keep (module docstring)."""
    return (1 - p_small).double() + (torch.atan(snr) * (2 / math.pi) / (num_draws + 1)).double()


def group_inclusion_scores(shrinkage: Mapping[str, GroupShrinkage], groupings: Mapping[str, Grouping],
                           weight_scores: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Per-weight ``group-inclusion`` scores of the tensors in ``weight_scores`` (their per-weight inclusion scores).

    A tensor in a grouping takes its group's score everywhere (see the module docstring); the
    others keep ``weight_scores``.
    """
    scores = dict(weight_scores)
    for site, d in shrinkage.items():
        group = inclusion_score(d.p_small, d.snr, len(d.norms))
        matrix = group.unsqueeze(-1).expand(groupings[site].n_groups, groupings[site].size)
        for name, tensor in groupings[site].scatter(matrix).items():
            if name in scores:
                scores[name] = tensor.contiguous()
    return scores


def group_summary(shrinkage: Mapping[str, GroupShrinkage], groupings: Mapping[str, Grouping]) -> list[dict]:
    """One row per grouping: ``grouping``, ``kind``, ``n_groups``, ``size``, ``eps``, ``expected_small``
    (``sum_g P(||w_g|| < eps)``), ``likely_small`` (groups with ``P > 0.9``), ``map_small`` (MAP norm ``< eps``)."""
    return [{"grouping": site, "kind": groupings[site].kind, "n_groups": groupings[site].n_groups,
             "size": groupings[site].size, "eps": d.eps, "expected_small": d.p_small.sum().item(),
             "likely_small": int((d.p_small > 0.9).sum()), "map_small": int((d.map_norm < d.eps).sum())}
            for site, d in shrinkage.items()]


def group_posterior_variables(shrinkage: Mapping[str, GroupShrinkage]) -> dict[str, Tensor]:
    """Draws for ``posterior.nc``: ``<site>_norm`` (``||w_g||``) and ``<site>_small`` (the indicator whose
    posterior mean is ``P(||w_g|| < eps | data)``), each ``[S, G]``."""
    variables = {}
    for site, d in shrinkage.items():
        variables[f"{site}_norm"] = d.norms
        variables[f"{site}_small"] = d.small
    return variables
