"""Remove dead units from a chain of layers, folding the constants they emit into the next bias.

Units are the outputs of each ``Linear`` (features) and ``Conv2d`` (channels); between two such
layers only per-channel layers act (see :mod:`.chain`), and ``flatten`` turns channel ``j`` of a
``C x H x W`` map into the block of features ``j*H*W ... (j+1)*H*W - 1``.

* **Constant** unit: every kept incoming weight comes from constant units (in particular: no
  kept incoming weight).  Its output is ``b_j`` plus the folded constants, the same at every
  position; the per-channel layers after it map it to a constant ``c_j``, and the next layer's
  bias absorbs it: ``b'_o = b_o + sum_j W[o, block_j] c_j`` (for a convolution
  ``b'_o = b_o + sum_j c_j sum_{kh,kw} W[o, j, kh, kw]``, exact only without padding, so
  constant channels that feed a padded convolution are kept and reported).
* **Unused** unit: no kept weight to a unit that is itself kept (the outputs are always kept).

One forward pass finds the constants, one backward pass the used units; a unit survives if it is
used and not constant, which is a fixed point (removing either kind creates no new one).  The
inputs a network never reads are dropped by a :class:`~.loader.Gather` before the first layer
(when only ``flatten`` precedes it).  BatchNorm right after a Linear/Conv2d is folded into it
(``W' = s W``, ``b' = s (b - mean) + beta``, ``s = gamma / sqrt(var + eps)``); any other
BatchNorm is kept, sliced to the surviving channels.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from .chain import NORMS, PRUNABLE
from .loader import Gather


@dataclass
class ShrinkReport:
    """What shrinking did: unit counts, per-layer shapes and non-zeros, notes on what was not folded."""

    widths_before: list[int]
    widths_after: list[int]
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fold_batchnorm(names: list[str], layers: list[nn.Module]) -> tuple[list[str], list[nn.Module], list[str]]:
    """Fold every BatchNorm that directly follows a Linear/Conv2d into it (eval statistics)."""
    out_names, out_layers, notes = [], [], []
    for name, layer in zip(names, layers):
        previous = out_layers[-1] if out_layers else None
        if isinstance(layer, NORMS) and isinstance(previous, PRUNABLE):
            out_layers[-1] = _folded(previous, layer)
            notes.append(f"{name} folded into {out_names[-1]}")
            continue
        if isinstance(layer, NORMS):
            notes.append(f"{name} kept as a layer (it does not directly follow a Linear/Conv2d)")
        out_names.append(name)
        out_layers.append(layer)
    return out_names, out_layers, notes


def _folded(layer: nn.Module, norm: nn.Module) -> nn.Module:
    """``layer`` followed by ``norm`` as one layer: ``W' = s W``, ``b' = s (b - mean) + beta``."""
    weight = layer.weight.detach().double()
    var, mean = norm.running_var.double(), norm.running_mean.double()
    gamma = norm.weight.detach().double() if norm.weight is not None else torch.ones_like(var)
    beta = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + norm.eps)
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(var)
    fused = copy.deepcopy(layer)
    fused.weight = nn.Parameter((weight * scale.reshape(-1, *[1] * (weight.dim() - 1))).to(layer.weight.dtype))
    fused.bias = nn.Parameter((scale * (bias - mean) + beta).to(layer.weight.dtype))
    return fused


def shrink(names: list[str], layers: list[nn.Module],
           input_shape: tuple[int, ...]) -> tuple[list[str], list[nn.Module], ShrinkReport]:
    """The chain without its dead units, computing the same function (see the module docstring)."""
    prunable = [i for i, layer in enumerate(layers) if isinstance(layer, PRUNABLE)]
    if not prunable:
        raise ConfigError("export found no Linear or Conv2d layer to shrink")
    shapes = _input_shapes(layers, input_shape)
    for i in prunable:
        if isinstance(layers[i], nn.Linear) and len(shapes[i]) != 2:
            raise ConfigError(f"export: {names[i]} is a Linear applied to a {len(shapes[i])}-d activation; "
                              "only [batch, features] inputs (after flatten) are supported")
    groups = [1] + [_group(layers[a + 1:b], shapes[a + 1:b]) for a, b in zip(prunable, prunable[1:])]
    gatherable = all(isinstance(layer, nn.Flatten) for layer in layers[:prunable[0]])
    notes: list[str] = []

    # forward: constant units, their values at the next layer's input, and folded biases
    first = layers[prunable[0]]
    const_in = torch.zeros(shapes[prunable[0]][1], dtype=torch.bool, device=first.weight.device)
    value_in = torch.zeros(const_in.shape, dtype=torch.float64, device=first.weight.device)
    biases, live, constants = [], [], []
    for k, i in enumerate(prunable):
        layer, g = layers[i], groups[k]
        bias = (layer.bias.detach().double() if layer.bias is not None
                else layer.weight.new_zeros(layer.weight.shape[0], dtype=torch.float64))
        if const_in.any() and isinstance(layer, nn.Conv2d) and any(p != 0 for p in layer.padding):
            notes.append(f"{names[i]}: {int(const_in.sum())} constant input channel(s) kept, since a padded "
                         "convolution of a constant map is not constant at the borders")
            const_in = torch.zeros_like(const_in)
        if const_in.any():
            bias = bias + _apply_weight(layer, _filled(shapes[i], torch.where(const_in, value_in, 0.0), g))
        biases.append(bias)
        connected = _connectivity(layer, g) & ~const_in
        live.append(connected)
        constants.append(const_in)
        if k + 1 == len(prunable):
            break
        nxt = prunable[k + 1]
        out = _run(layers[i + 1:nxt], _filled(shapes[i + 1], bias, 1))
        const_in = ~connected.any(1)
        value_in = out[0, :, 0, 0] if out.dim() == 4 else out[0, ::groups[k + 1]]

    # backward: units with a kept weight to a kept unit of the next layer
    keep = [None] * len(prunable)
    keep[-1] = torch.ones(live[-1].shape[0], dtype=torch.bool, device=first.weight.device)
    for k in range(len(prunable) - 2, -1, -1):
        keep[k] = live[k + 1][keep[k + 1]].any(0)
    reads = live[0][keep[0]].any(0) if gatherable else torch.ones_like(constants[0])
    widths_before = [shapes[prunable[0]][1]] + [layers[i].weight.shape[0] for i in prunable]
    widths_after = [int(reads.sum())] + [int(k.sum()) for k in keep]

    new_names, new_layers = [], []
    report_layers = []
    for index, (name, layer) in enumerate(zip(names, layers)):
        if index in prunable:
            k = prunable.index(index)
            if k == 0 and gatherable and not bool(reads.all()):
                new_names.append("inputs")
                new_layers.append(Gather(reads.nonzero().reshape(-1)))
            inputs = reads if k == 0 else keep[k - 1]
            positions = (inputs if k == 0 or isinstance(layer, nn.Conv2d)
                         else inputs.repeat_interleave(groups[k]))
            small = _sliced(layer, keep[k], positions, biases[k])
            folded = int(constants[k + 1].sum()) if k + 1 < len(prunable) else 0
            report_layers.append({"layer": name, "type": type(layer).__name__,
                                  "shape_before": list(layer.weight.shape), "shape_after": list(small.weight.shape),
                                  "nonzero_before": int(torch.count_nonzero(layer.weight)),
                                  "nonzero_after": int(torch.count_nonzero(small.weight)),
                                  "units_removed": int((~keep[k]).sum()), "units_removed_constant": folded})
            new_names.append(name)
            new_layers.append(small)
            continue
        owner = max((k for k, i in enumerate(prunable) if i < index), default=None)
        if isinstance(layer, NORMS) and owner is not None:
            layer = _sliced_norm(layer, keep[owner], _group(layers[prunable[owner] + 1:index + 1],
                                                            shapes[prunable[owner] + 1:index + 1]))
        new_names.append(name)
        new_layers.append(layer)
    for entry, k in zip(report_layers[:-1], range(len(prunable) - 1)):
        if entry["units_removed_constant"]:
            notes.append(f"{entry['layer']}: {entry['units_removed_constant']} constant unit(s) folded into "
                         f"the bias of {report_layers[k + 1]['layer']}")
    return new_names, new_layers, ShrinkReport(widths_before, widths_after, report_layers, notes)


def _input_shapes(layers: list[nn.Module], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The shape of one example's activation entering each layer (plus the output's)."""
    first = next(layer for layer in layers if isinstance(layer, PRUNABLE))
    x = torch.zeros(1, *input_shape, dtype=first.weight.dtype, device=first.weight.device)
    shapes = [tuple(x.shape)]
    with torch.no_grad():
        for layer in layers:
            x = layer(x)
            shapes.append(tuple(x.shape))
    return shapes


def _group(between: list[nn.Module], shapes: list[tuple[int, ...]]) -> int:
    """Entries of dim 1 per unit after ``between``: ``H*W`` once a ``C x H x W`` map is flattened."""
    g = 1
    for layer, shape in zip(between, shapes):
        if isinstance(layer, nn.Flatten) and len(shape) > 2:
            g *= math.prod(shape[2:])
    return g


def _connectivity(layer: nn.Module, g: int) -> Tensor:
    """``A[o, j]``: whether output unit ``o`` has a kept (non-zero) weight from input unit ``j``."""
    nonzero = layer.weight.detach() != 0
    if isinstance(layer, nn.Linear):
        return nonzero.reshape(nonzero.shape[0], -1, g).any(2)
    return nonzero.flatten(2).any(2)


def _filled(shape: tuple[int, ...], per_unit: Tensor, g: int) -> Tensor:
    """A float64 activation of ``shape`` whose unit ``j`` holds ``per_unit[j]`` everywhere."""
    values = per_unit.double().repeat_interleave(g)
    return values.reshape(1, -1, *[1] * (len(shape) - 2)).expand(shape).contiguous()


def _apply_weight(layer: nn.Module, z: Tensor) -> Tensor:
    """``W z`` without bias, in float64, one value per output unit (``z`` is spatially constant)."""
    weight = layer.weight.detach().double()
    if isinstance(layer, nn.Linear):
        return F.linear(z, weight)[0]
    return F.conv2d(z, weight, None, layer.stride, 0, layer.dilation)[0, :, 0, 0]


def _run(between: list[nn.Module], x: Tensor) -> Tensor:
    """``x`` through the per-channel layers between two prunable layers, in float64."""
    with torch.no_grad():
        for layer in between:
            x = copy.deepcopy(layer).double()(x)
    return x


def _sliced(layer: nn.Module, rows: Tensor, inputs: Tensor, bias: Tensor) -> nn.Module:
    """A new Linear/Conv2d holding the kept output units ``rows`` and input positions ``inputs``."""
    weight = layer.weight.detach()[rows][:, inputs]
    dtype = layer.weight.dtype
    new_bias = bias[rows].to(dtype)
    has_bias = layer.bias is not None or bool(new_bias.ne(0).any())
    if isinstance(layer, nn.Linear):
        small = nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias, device=weight.device, dtype=dtype)
    else:
        small = nn.Conv2d(weight.shape[1], weight.shape[0], layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, bias=has_bias, device=weight.device, dtype=dtype)
    small.weight.data.copy_(weight)
    if has_bias:
        small.bias.data.copy_(new_bias)
    return small.eval()


def _sliced_norm(norm: nn.Module, units: Tensor, g: int) -> nn.Module:
    """A BatchNorm keeping the dim-1 entries of ``units`` (``g`` entries per unit)."""
    positions = units.repeat_interleave(g)
    small = copy.deepcopy(norm)
    small.num_features = int(positions.sum())
    for name in ("weight", "bias"):
        if getattr(norm, name) is not None:
            setattr(small, name, nn.Parameter(getattr(norm, name).detach()[positions]))
    small.running_mean = norm.running_mean[positions]
    small.running_var = norm.running_var[positions]
    return small.eval()
