"""Keep masks from per-weight scores: a larger score means more worth keeping.

Any ``{parameter name: score tensor}`` mapping works as scores: ``magnitude_scores`` gives
``abs(w)`` (the paper's one-shot magnitude pruning); other criteria (e.g. minus HALO's
learned coefficient ``xi / lambda**2``, a posterior signal-to-noise ratio, inclusion
probabilities) plug in the same way.  Kept counts are exact, ties included.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from ..errors import ConfigError

By = Literal["global", "layer"]


def keep_count(keep: float, total: int) -> int:
    """Number of weights kept out of ``total`` for keep fraction ``keep``.

    ``round(keep * total)`` with Python's round-half-to-even, but at least 1.
    """
    if not (math.isfinite(keep) and 0.0 < keep <= 1.0):
        raise ConfigError(f"`keep` fraction must be in (0, 1], got {keep!r}")
    if total < 1:
        raise ConfigError(f"cannot keep a fraction of {total} weights")
    return max(1, round(keep * total))


def _top_mask(flat: Tensor, count: int) -> Tensor:
    """Boolean mask of the ``count`` largest entries; ties go to the earlier index."""
    order = torch.argsort(-flat, stable=True)
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    mask[order[:count]] = True
    return mask


def keep_masks(scores: Mapping[str, Tensor], keep: float, by: By = "global") -> dict[str, Tensor]:
    """Boolean keep masks with exactly ``keep_count`` surviving entries.

    ``by="global"`` ranks all tensors together (ties: earlier tensor, then earlier index,
    wins); ``by="layer"`` keeps ``keep_count(keep, numel)`` of each tensor on its own.
    """
    if by not in ("global", "layer"):
        raise ConfigError(f"unknown `prune_by` mode {by!r}: choose 'global' or 'layer'")
    if not scores:
        raise ConfigError("no scores given to prune")
    flats = {name: s.detach().reshape(-1).to(torch.float64) for name, s in scores.items()}
    for name, flat in flats.items():
        if torch.isnan(flat).any():
            raise ConfigError(f"scores for {name!r} contain NaN")
    if by == "layer":
        return {name: _top_mask(flat, keep_count(keep, flat.numel())).reshape(scores[name].shape)
                for name, flat in flats.items()}
    joined = torch.cat(list(flats.values()))
    pieces = _top_mask(joined, keep_count(keep, joined.numel())).split([f.numel() for f in flats.values()])
    return {name: piece.reshape(scores[name].shape) for name, piece in zip(flats, pieces)}


def magnitude_scores(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Magnitude criterion: ``abs(w)`` for every tensor."""
    return {name: p.detach().abs() for name, p in params.items()}
