"""Per-epoch training checkpoints: written atomically, validated when read."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..atomic import save_torch
from ..errors import CheckpointError

FORMAT = "bayes_halo-checkpoint-v1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically, tagged with the format."""
    return save_torch(path, {"format": FORMAT, **state})


def load_checkpoint(path: str | Path, required: tuple[str, ...] = (), format: str = FORMAT) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint` (or another ``format``-tagged dict, e.g. ``model.pt``),
    raising CheckpointError if it is missing, unreadable, of another format or incomplete."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}); "
                              "delete it, or start again with `overwrite`") from None
    if not isinstance(state, dict) or state.get("format") != format:
        raise CheckpointError(f"{path} is not a bayes_halo file of format {format}")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is incomplete")
    return state
