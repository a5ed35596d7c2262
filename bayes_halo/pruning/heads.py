"""Prune a transformer's attention heads and MLP units by group: scores, exact counts, the shrunk network.

The groups are the model's own (``net.bayes_halo_groupings("unit")``: ``blocks.<l>.attn:heads``,
``blocks.<l>.mlp:units``).  Scores, larger = keep, one ``[G]`` tensor per grouping:

* ``"magnitude"``: ``||w_g||_2``;
* ``"wanda"`` (activation-aware, after Wanda, Sun et al. 2024): every weight ``W_ij`` of a Linear
  member scores ``|W_ij| * ||X_j||_2``, with ``X_j`` input feature ``j`` over all tokens of a
  calibration batch (a bias: ``|b_i| * sqrt(#tokens)``, its input being 1); a group scores the sum
  over its entries;
* any ``{grouping: [G]}`` a caller brings (e.g. minus group HALO's learned coefficient ``xi / lambda_g^2``).

:func:`keep_exact` keeps exactly ``k`` heads (or units) over all layers together; a layer may lose
all of them (it then keeps only its residual path, see :mod:`bayes_halo.models.transformer`).  Every
head costs the same multiply-adds, and so does every unit, so two prunings that keep the same numbers
of heads and units have equal multiply-adds.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..groups import Grouping

Scores = dict[str, Tensor]


def head_unit_groupings(net: nn.Module) -> tuple[list[Grouping], list[Grouping]]:
    """The network's head groupings and MLP-unit groupings (``bayes_halo_groupings("unit")``)."""
    hook = getattr(net, "bayes_halo_groupings", None)
    groupings = hook("unit") if callable(hook) else None
    if not groupings:
        raise ConfigError(f"{type(net).__name__} declares no attention heads or MLP units to prune")
    return [g for g in groupings if g.kind == "head"], [g for g in groupings if g.kind == "mlp-unit"]


def magnitude_scores(groupings: Sequence[Grouping], net: nn.Module) -> Scores:
    """``||w_g||_2`` per group of each grouping."""
    tensors = {name: p.detach() for name, p in net.named_parameters()}
    return {g.name: g.norms(tensors) for g in groupings}


@torch.no_grad()
def input_norms(net: nn.Module, layers: Sequence[str], x: Tensor) -> dict[str, Tensor]:
    """``||X_j||_2`` of every input feature ``j`` of each named Linear layer over all tokens of ``net(x)``."""
    sums: dict[str, Tensor] = {}
    handles = []
    for name in layers:
        def record(module, inputs, output, name=name):
            flat = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
            sums[name] = flat.pow(2).sum(0)
            sums[name + ":count"] = torch.tensor(float(flat.shape[0]), dtype=torch.float64)
        handles.append(net.get_submodule(name).register_forward_hook(record))
    was_training = net.training
    try:
        net.eval()
        net(x)
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()
    return {key: value.sqrt() for key, value in sums.items()}


def wanda_scores(groupings: Sequence[Grouping], net: nn.Module, x: Tensor) -> Scores:
    """Activation-aware scores: ``sum_{(i,j) in g} |W_ij| ||X_j||_2`` (biases: ``|b_i| sqrt(#tokens)``)."""
    members = {m.name for g in groupings for m in g.members}
    layers = sorted({name.rpartition(".")[0] for name in members})
    norms = input_norms(net, layers, x)
    params = dict(net.named_parameters())
    weighted = {}
    for name in members:
        layer, _, attr = name.rpartition(".")
        value = params[name].detach().abs().double()
        weighted[name] = value * norms[layer] if attr == "weight" else value * norms[layer + ":count"]
    return {g.name: g.matrix(weighted).sum(1).float() for g in groupings}


def keep_exact(scores: Mapping[str, Tensor], k: int) -> dict[str, Tensor]:
    """Boolean ``[G]`` per grouping keeping exactly the ``k`` best-scored groups over all groupings.

    Ties: the earlier grouping, then the earlier group.  A grouping may keep none.
    """
    total = sum(int(s.numel()) for s in scores.values())
    if not 0 <= k <= total:
        raise ConfigError(f"cannot keep {k} of {total} groups")
    flat = torch.cat([s.detach().double().cpu().reshape(-1) for s in scores.values()])
    if torch.isnan(flat).any():
        raise ConfigError("group scores contain NaN")
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[torch.sort(flat, descending=True, stable=True).indices[:k]] = True
    return dict(zip(scores, chosen.split([int(s.numel()) for s in scores.values()])))


def group_keep_masks(groupings: Sequence[Grouping], kept: Mapping[str, Tensor], net: nn.Module) -> dict[str, Tensor]:
    """Boolean keep masks for every member tensor: the entries of group ``g`` follow ``kept[grouping][g]``."""
    params = dict(net.named_parameters())
    masks = {}
    for g in groupings:
        rows = kept[g.name].to(torch.float64)[:, None].expand(g.n_groups, g.size)
        for name, value in g.scatter(rows).items():
            masks[name] = value.to(params[name].device) > 0
    return masks


def keep_counts(net: nn.Module, head_fraction: float, unit_fraction: float) -> tuple[int, int]:
    """Heads and units kept for fractions of the network's totals: ``round(fraction * total)``."""
    heads, units = head_unit_groupings(net)
    for fraction in (head_fraction, unit_fraction):
        if not (math.isfinite(fraction) and 0 <= fraction <= 1):
            raise ConfigError(f"keep fraction {fraction} must be in [0, 1]")
    return (round(head_fraction * sum(g.n_groups for g in heads)),
            round(unit_fraction * sum(g.n_groups for g in units)))


def prune_masks(net: nn.Module, scores: Mapping[str, Tensor], n_heads: int, n_units: int) -> dict[str, Tensor]:
    """Masks keeping exactly ``n_heads`` heads and ``n_units`` MLP units by ``scores`` (``{grouping: [G]}``)."""
    heads, units = head_unit_groupings(net)
    kept = {**keep_exact({g.name: scores[g.name] for g in heads}, n_heads),
            **keep_exact({g.name: scores[g.name] for g in units}, n_units)}
    return group_keep_masks(heads + units, kept, net)
