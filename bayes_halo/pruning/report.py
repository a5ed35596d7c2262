"""How sparse masks and pruned networks are, tensor by tensor."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

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
