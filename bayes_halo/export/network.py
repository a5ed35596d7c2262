"""A pruned network as the smaller network it computes: trace, fold BatchNorm, shrink, store."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .chain import trace_chain
from .loader import FORMAT, build_network
from .shrink import ShrinkReport, fold_batchnorm, shrink
from .storage import layer_spec, stored_bytes


@dataclass
class ExportedNetwork:
    """The shrunk chain, the file contents that rebuild it, and what shrinking did."""

    network: nn.Sequential
    state: dict[str, Any]
    report: ShrinkReport

    def tensor_bytes(self) -> int:
        """Bytes of every stored tensor (the file adds its container's overhead)."""
        return sum(stored_bytes(t) for spec in self.state["layers"] for t in spec.get("tensors", {}).values())

    def layouts(self) -> dict[str, str]:
        """``{"<layer>.<tensor>": layout}`` as stored."""
        return {f"{name}.{t}": stored["layout"] for name, spec in zip(self.state["names"], self.state["layers"])
                for t, stored in spec.get("tensors", {}).items()}


def export_network(net: nn.Module, input_shape: tuple[int, ...], meta: dict[str, Any] | None = None) -> ExportedNetwork:
    """``net`` (pruned weights already zero) without its dead units, each tensor in its smallest layout.

    The result computes the same function as ``net`` in eval mode (up to float rounding in the
    folded biases); ``state`` is what :func:`bayes_halo.export.loader.load_export` reads.
    """
    names, layers = trace_chain(net)
    names, layers, bn_notes = fold_batchnorm(names, layers)
    names, layers, report = shrink(names, layers, tuple(input_shape))
    report.notes[:0] = bn_notes
    state = {"format": FORMAT, "input_shape": list(input_shape), "names": names,
             "layers": [layer_spec(layer) for layer in layers], "meta": dict(meta or {})}
    return ExportedNetwork(build_network(state), state, report)
