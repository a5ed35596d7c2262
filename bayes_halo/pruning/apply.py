"""Attach keep masks to a network with ``torch.nn.utils.prune``, or bake them in.

Fine-tuning with the sparsity pattern fixed is just ``apply_masks``: torch's forward
pre-hook recomputes ``weight = weight_orig * weight_mask`` before every forward, so pruned
entries of the effective weight stay exactly zero while ``weight_orig`` trains.  Build the
optimizer *after* ``apply_masks``: it replaces ``weight`` by the parameter ``weight_orig``.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping

from torch import Tensor, nn
from torch.nn.utils import prune

from ..errors import ConfigError
from ..models.selection import owner_of


def apply_masks(module: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Attach boolean keep masks in place via ``prune.custom_from_mask``.

    On an already-pruned tensor torch combines the masks by logical AND (an entry survives
    only if every mask keeps it), so on a fresh, unpruned module the kept counts are
    exactly those of ``masks``.  All names and shapes are checked before anything changes.
    """
    targets = []
    for name, mask in masks.items():
        owner, attr = owner_of(module, name)
        shape = getattr(owner, attr).shape
        if mask.shape != shape:
            raise ConfigError(f"mask for {name!r} has shape {tuple(mask.shape)}, parameter has {tuple(shape)}")
        targets.append((owner, attr, mask))
    for owner, attr, mask in targets:
        device = getattr(owner, attr).device
        prune.custom_from_mask(owner, attr, mask.detach().to(device=device, dtype=bool))


def remove_masks(module: nn.Module) -> None:
    """Make every pruning on ``module`` permanent (``prune.remove``): zeros stay in the weights."""
    for sub in module.modules():
        for hook in list(sub._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(sub, hook._tensor_name)


def pruned_copy(module: nn.Module, masks: Mapping[str, Tensor]) -> nn.Module:
    """A deep copy with ``masks`` applied and made permanent; ``module`` is left untouched.

    Any pruning already attached to ``module`` is carried into the copy, combined (AND)
    with ``masks`` and made permanent too.
    """
    clone = copy.deepcopy(module)
    apply_masks(clone, masks)
    remove_masks(clone)
    return clone
