"""Load an exported network: one call, a plain ``torch.nn.Sequential``.

    from bayes_halo.export import load_export
    net = load_export("small.pt")          # eval mode, ordinary torch.nn layers
    fast = load_export("small.pt", jit=True)   # the same, scripted and frozen (TorchScript)
    logits = net(images)                   # [n, 1, 28, 28] -> [n, 10]

This file imports nothing but torch, so it can be copied next to an application that does not
install bayes_halo.  The file it reads is a ``torch.save`` dict (loadable with
``weights_only=True``): ``{"format": FORMAT, "input_shape", "layers": [spec, ...], "meta"}``,
where each spec names a ``torch.nn`` class and its settings, and each tensor is stored as

* ``dense``:   ``{"layout": "dense", "values": T}``
* ``csr``:     the tensor as a ``[rows, rest]`` matrix; ``crow`` (row starts, length rows + 1),
  ``col`` (column of each non-zero), ``values`` (row-major non-zeros);
* ``bitmask``: ``bits`` (one bit per entry, little-endian within each byte, row-major) and the
  ``values`` of the set bits, in order.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

FORMAT = "bayes_halo-export-v1"


class Gather(nn.Module):
    """Keep only the input features (or channels) a network reads: ``x.index_select(1, index)``."""

    def __init__(self, index: Tensor) -> None:
        super().__init__()
        self.register_buffer("index", index.to(torch.long))

    def forward(self, x: Tensor) -> Tensor:
        return x.index_select(1, self.index)


def decode(stored: dict[str, Any]) -> Tensor:
    """The dense tensor held by one stored entry (see the module docstring for the layouts)."""
    layout, values = stored["layout"], stored["values"]
    if layout == "dense":
        return values
    shape = tuple(stored["shape"])
    flat = torch.zeros(math.prod(shape), dtype=values.dtype, device=values.device)
    if layout == "csr":
        crow = stored["crow"].to(torch.long)
        rows = torch.repeat_interleave(torch.arange(len(crow) - 1, device=crow.device), crow.diff())
        cols = math.prod(shape[1:])
        flat[rows * cols + stored["col"].to(torch.long)] = values
    elif layout == "bitmask":
        shifts = torch.arange(8, dtype=torch.uint8, device=values.device)
        bits = (stored["bits"].unsqueeze(1) >> shifts) & 1
        flat[bits.reshape(-1)[:flat.numel()].bool()] = values
    else:
        raise ValueError(f"unknown tensor layout {layout!r}")
    return flat.reshape(shape)


def build_layer(spec: dict[str, Any]) -> nn.Module:
    """One ``torch.nn`` layer from its spec: ``type``, ``args`` (constructor settings), ``tensors``."""
    kind, args = spec["type"], dict(spec.get("args", {}))
    tensors = {name: decode(t) for name, t in spec.get("tensors", {}).items()}
    if kind == "Gather":
        return Gather(tensors["index"])
    if kind in ("Linear", "Conv2d"):
        args["bias"] = "bias" in tensors
    layer = getattr(nn, kind)(**args)
    for name, value in tensors.items():
        target = getattr(layer, name)
        if target.shape != value.shape:
            raise ValueError(f"{kind}.{name}: stored shape {tuple(value.shape)}, layer has {tuple(target.shape)}")
        target.data = value
    return layer


def build_network(state: dict[str, Any]) -> nn.Sequential:
    """The network described by a loaded export dict, in eval mode, without gradients."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    net = nn.Sequential(*(build_layer(spec) for spec in state["layers"])).eval()
    net.requires_grad_(False)
    return net


def load_export(path: str | Path, map_location: str | torch.device = "cpu", jit: bool = False) -> nn.Module:
    """Read an export file written by ``python -m bayes_halo.export`` as a ``torch.nn.Sequential``.

    ``jit=True`` returns it scripted and frozen with TorchScript instead: the same layers and
    outputs, with less Python overhead per call (it matters at small batch sizes).  Recent
    torch marks TorchScript deprecated; it still works, and that warning is silenced here.
    """
    net = build_network(torch.load(path, map_location=map_location, weights_only=True))
    if not jit:
        return net
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.freeze(torch.jit.script(net))
