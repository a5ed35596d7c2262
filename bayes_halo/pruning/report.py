"""How sparse masks and pruned networks are, tensor by tensor."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..models.selection import owner_of


def sparsity_table(masks: Mapping[str, Tensor]) -> list[dict]:
    """One row per mask: ``{"layer", "total", "kept", "fraction"}`` (fraction = kept / total)."""
    rows = []
    for name, mask in masks.items():
        total, kept = mask.numel(), int(mask.sum())
        rows.append({"layer": name, "total": total, "kept": kept,
                     "fraction": kept / total if total else 0.0})
    return rows


def count_zeros(module: nn.Module, names: Iterable[str]) -> dict[str, int]:
    """Exact zeros in each named tensor of ``module``, read from the weights themselves.

    For a pruned-but-not-removed tensor this reads the effective (masked) weight.
    """
    counts = {}
    for name in names:
        owner, attr = owner_of(module, name)
        counts[name] = int(torch.count_nonzero(getattr(owner, attr).detach() == 0))
    return counts


def thin_layers(table: Iterable[Mapping[str, Any]], n_classes: int) -> list[str]:
    """The layers of a sparsity ``table`` left with no weight or with fewer kept weights than ``n_classes``
    (such a network cannot tell every class apart), as ``"fc3.weight (3 of 1,000 kept)"``."""
    return [f"{r['layer']} ({r['kept']:,} of {r['total']:,} kept)" for r in table
            if r["kept"] == 0 or r["kept"] < n_classes]


def thin_layer_warnings(rows: Iterable[Mapping[str, Any]], n_classes: int) -> list[str]:
    """One line per keep fraction of ``sparsity.csv``-style ``rows`` (``keep, criterion, layer, total,
    kept``) whose pruning leaves a layer with fewer weights than ``n_classes``, naming layer and criterion."""
    tables: dict[float, dict[str, list[Mapping[str, Any]]]] = {}
    for row in rows:
        tables.setdefault(row["keep"], {}).setdefault(row["criterion"], []).append(row)
    lines = []
    for keep, by_criterion in tables.items():
        thin = [f"{criterion}: {', '.join(layers)}" for criterion, table in by_criterion.items()
                if (layers := thin_layers(table, n_classes))]
        if thin:
            lines.append(f"warning: keeping {100 * keep:g}% leaves fewer weights than the {n_classes} classes in a "
                         f"layer ({'; '.join(thin)}): expect accuracy near chance")
    return lines
