"""A pruned network as the smaller network it computes: remove dead units, count, check, serialise.

The file is a ``torch.export`` program (``.pt2``): ``torch.export.load(path).module()`` runs it
with torch alone (no bayes_halo, no model class), batch size free.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_write
from ..errors import ConfigError
from .cost import costs
from .deploy import deployable
from .removal import Removal, remove_dead_units

TOLERANCE = 1e-4


@dataclass
class ExportedNetwork:
    """The shrunk network (same class as the input, smaller layers), its costs before/after, the removal,
    and ``deployed``: the same function as it is saved (:func:`~.deploy.deployable`: BatchNorms folded,
    convolutions channels-last)."""

    network: nn.Module
    before: dict[str, Any]
    after: dict[str, Any]
    removal: Removal
    input_shape: tuple[int, ...]
    deployed: nn.Module

    def program(self) -> torch.export.ExportedProgram:
        """``deployed`` as a ``torch.export`` program with a dynamic batch dimension."""
        example = torch.zeros(2, *self.input_shape, dtype=_dtype(self.network), device=_device(self.network))
        return torch.export.export(self.deployed, (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))

    def save(self, path: str | Path) -> Path:
        """Write the ``.pt2`` file atomically."""
        program = self.program()
        return atomic_write(path, lambda f: torch.export.save(program, f))


def export_network(net: nn.Module, input_shape: tuple[int, ...], example: torch.Tensor | None = None) -> ExportedNetwork:
    """A copy of ``net`` (pruned entries already exactly zero) without its dead units, checked on a probe batch.

    A network that knows its own structure may shrink itself: a method ``bayes_halo_shrunk()``
    returning the smaller copy (the transformers: fewer heads, narrower MLPs) is used instead of
    Torch-Pruning's dependency graph.  ``example``: a batch of real inputs, traced and compared
    on (needed where inputs are not real-valued images, e.g. a character model's token ids);
    by default standard-normal inputs of ``input_shape``.

    The copy is also put in the form it is saved in (``deployed``, :func:`~.deploy.deployable`).
    Raises ConfigError when the outputs of either differ from ``net``'s by more than
    ``TOLERANCE * (1 + max |output|)`` (an operation that maps 0 to non-zero between layers).
    """
    net = net.eval()
    probe = example
    if example is None:
        example = torch.randn(2, *input_shape, dtype=_dtype(net), device=_device(net))
        probe = torch.randn(16, *input_shape, dtype=example.dtype, device=example.device)
    before = costs(net, example)
    if hasattr(net, "bayes_halo_shrunk"):
        small, removal = net.bayes_halo_shrunk().eval(), Removal(notes=["shrunk by the network's own bayes_halo_shrunk()"])
    else:
        small = copy.deepcopy(net)
        removal = remove_dead_units(small, example)
    after = costs(small, example)
    deployed, notes = deployable(small, example)
    removal.notes.extend(notes)
    with torch.no_grad():
        expected = net(probe)
        gaps = [float((expected - candidate(probe)).abs().max()) for candidate in (small, deployed)]
    if not max(gaps) <= TOLERANCE * (1 + float(expected.abs().max())):
        raise ConfigError(f"export: removing dead units of {type(net).__name__} changed its outputs by {gaps[0]:.3g} "
                          f"({gaps[1]:.3g} as saved); an operation between its layers maps 0 to non-zero")
    return ExportedNetwork(small, before, after, removal, tuple(input_shape), deployed)


def _dtype(net: nn.Module) -> torch.dtype:
    return next(net.parameters()).dtype


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


