"""Store tensors in whichever layout is smallest, and layers as specs :mod:`.loader` rebuilds.

Bytes counted per layout (``n`` entries, ``z`` non-zeros, ``r`` rows, ``s`` bytes per value,
``i(m)`` bytes of the smallest integer type holding ``m``): dense ``n s``; CSR
``z s + z i(cols) + (r + 1) i(z)``; bitmask ``z s + ceil(n / 8)``.  Ties go to dense, then CSR.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .loader import Gather

LAYOUTS = ("dense", "csr", "bitmask")
_ARGS: dict[type, tuple[str, ...]] = {
    nn.Linear: ("in_features", "out_features"),
    nn.Conv2d: ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation"),
    nn.BatchNorm1d: ("num_features", "eps", "affine"), nn.BatchNorm2d: ("num_features", "eps", "affine"),
    nn.MaxPool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    nn.AvgPool2d: ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    nn.AdaptiveAvgPool2d: ("output_size",), nn.Flatten: ("start_dim", "end_dim"),
    nn.ReLU: (), nn.Tanh: (), nn.Sigmoid: (), nn.SiLU: (),
    nn.LeakyReLU: ("negative_slope",), nn.ELU: ("alpha",), nn.GELU: ("approximate",),
}
_TENSORS: dict[type, tuple[str, ...]] = {
    nn.Linear: ("weight", "bias"), nn.Conv2d: ("weight", "bias"),
    nn.BatchNorm1d: ("weight", "bias", "running_mean", "running_var"),
    nn.BatchNorm2d: ("weight", "bias", "running_mean", "running_var"),
}


def index_dtype(largest: int) -> torch.dtype:
    """The smallest integer dtype that holds ``0..largest``."""
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if largest <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def encode(tensor: Tensor, layout: str | None = None) -> dict[str, Any]:
    """``tensor`` in ``layout`` (default: the smallest of :data:`LAYOUTS`, see the module docstring)."""
    tensor = tensor.detach()
    if layout is None:
        candidates = [encode(tensor, name) for name in LAYOUTS] if tensor.dim() >= 1 else [encode(tensor, "dense")]
        return min(candidates, key=stored_bytes)
    if layout == "dense":
        return {"layout": "dense", "values": tensor.clone()}
    shape = list(tensor.shape)
    flat = tensor.reshape(-1)
    nonzero = flat != 0
    values = flat[nonzero].clone()
    if layout == "bitmask":
        padded = torch.zeros(-(-flat.numel() // 8) * 8, dtype=torch.uint8, device=flat.device)
        padded[:flat.numel()] = nonzero.to(torch.uint8)
        weights = 2 ** torch.arange(8, dtype=torch.int32, device=flat.device)
        bits = (padded.reshape(-1, 8).to(torch.int32) * weights).sum(1).to(torch.uint8)
        return {"layout": "bitmask", "shape": shape, "bits": bits, "values": values}
    if layout == "csr":
        matrix = nonzero.reshape(shape[0], -1)
        cols = matrix.shape[1]
        counts = matrix.sum(1)
        crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        col = matrix.nonzero()[:, 1]
        return {"layout": "csr", "shape": shape, "crow": crow.to(index_dtype(int(crow[-1]))),
                "col": col.to(index_dtype(max(cols - 1, 0))), "values": values}
    raise ValueError(f"unknown layout {layout!r}: choose one of {LAYOUTS}")


def stored_bytes(stored: dict[str, Any]) -> int:
    """Bytes of the tensors in one stored entry (``numel * element_size`` summed)."""
    return sum(v.numel() * v.element_size() for v in stored.values() if isinstance(v, Tensor))


def layer_spec(layer: nn.Module) -> dict[str, Any]:
    """The spec :func:`.loader.build_layer` turns back into ``layer`` (tensors in their smallest layout)."""
    if isinstance(layer, Gather):
        largest = int(layer.index.max()) if layer.index.numel() else 0
        return {"type": "Gather", "tensors": {"index": encode(layer.index.to(index_dtype(largest)), "dense")}}
    kind = type(layer)
    if kind not in _ARGS:
        raise ValueError(f"no export spec for {kind.__name__}")
    spec: dict[str, Any] = {"type": kind.__name__, "args": {a: getattr(layer, a) for a in _ARGS[kind]}, "tensors": {}}
    for name in _TENSORS.get(kind, ()):
        value = getattr(layer, name)
        if value is not None:
            spec["tensors"][name] = encode(value)
    return spec
