"""Structures: how a network's prunable tensors are cut into groups, by name (``--groups``).

A structure builder maps ``(net, example_input, layers)`` to a list of :class:`Grouping`;
``layers`` are the prunable layers in scope (:func:`bayes_halo.models.selection.prunable_layers`),
whose weights a grouping may cover.  Channel coupling comes from Torch-Pruning's dependency graph
(:mod:`bayes_halo.groups.graph`), traced once on ``example_input``.

* ``weight``: no groupings; the per-weight priors (the default).
* ``unit`` (Bayesian Compression's structure): every Conv2d's output channels, each group being
  the channel's filter with its bias and BatchNorm weight and bias entries; channels coupled by a
  residual sum form ONE grouping over all their producers (``"conv1:channels"`` of a ResNet holds
  the stem and every block's last convolution and BatchNorm of the stage); and every Linear
  layer's input units (its weight's columns, ``"fc1:inputs"``; the first layer's inputs are the
  pixels).  LeNet-5-Caffe: 20 + 50 channel groups and 800 + 500 input units of fc1 and fc2;
  LeNet-300-100: 784 + 300 + 100 input units.  Linear biases carry no prior.
* ``out-unit``: the output units of Linear layers (weight row and bias entry) and the output
  channels of convolutions (as in ``unit``), coupled the same way; the network's output layer
  (the layer no other layer consumes) is left out.
* ``bn-scale`` (Network Slimming): each BatchNorm's scales, one group per channel (``d = 1``).

A model may declare its own groupings (transformers: heads and MLP units) with a method
``bayes_halo_groupings(self, structure) -> list[Grouping] | None`` (``None``: use the builder);
:func:`attention_heads` and :func:`mlp_units` build those groupings.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry
from .graph import dependency_graph
from .grouping import Grouping, Slices, along

_CHANNEL_LAYERS = (nn.Conv2d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
Builder = Callable[[nn.Module, Tensor | None, Mapping[str, nn.Module]], list[Grouping]]


@dataclass(frozen=True)
class Structure:
    """A registered structure: its builder and the one-line help the command line shows."""

    build: Builder
    help: str


#: every structure by its ``--groups`` name
STRUCTURES: Registry[Structure] = Registry("groups", "bayes_halo.groups.register_structure")


def register_structure(name: str, help: str, overwrite: bool = False) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(net, example_input, layers) -> list[Grouping]`` as structure ``name``."""
    def add(builder: Builder) -> Builder:
        STRUCTURES.register(name, overwrite)(Structure(builder, help))
        return builder
    return add


def available_structures() -> list[str]:
    """Registered structure names, in registration order (``weight`` first)."""
    return STRUCTURES.names()


def build_groupings(structure: str, net: nn.Module, layers: Mapping[str, nn.Module],
                    example_input: Tensor | None = None) -> list[Grouping]:
    """The groupings of ``structure`` on ``net``: the model's own (``bayes_halo_groupings``) or the builder's."""
    entry = STRUCTURES.get(structure)
    hook = getattr(net, "bayes_halo_groupings", None)
    if callable(hook):
        own = hook(structure)
        if own is not None:
            return list(own)
    return entry.build(net, example_input, layers)


# ----------------------------------------------------------------- coupled channels
def _slices(name: str, param: Tensor, pairs: list[tuple[int, int]], n_groups: int) -> Slices:
    """Member ``name`` sliced along dim 0 from (root index, index) pairs: group ``g`` owns the indices paired with ``g``."""
    per_root: list[list[int]] = [[] for _ in range(n_groups)]
    for root, idx in pairs:
        per_root[root].append(idx)
    widths = {len(idxs) for idxs in per_root}
    if len(widths) != 1:
        raise ConfigError(f"{name!r}: its channels do not map evenly onto the coupled groups")
    return Slices(name, 0, torch.tensor(per_root, dtype=torch.int64), tuple(param.shape))


def _coupled_groupings(net: nn.Module, example_input: Tensor | None, layers: Mapping[str, nn.Module],
                       roots: tuple[type, ...], producers: tuple[type, ...], structure: str) -> list[Grouping]:
    """One grouping per set of coupled output channels whose root layer is a ``roots`` layer in ``layers``.

    Members: the weight and bias of every producer (a ``producers`` layer in ``layers``, or a
    BatchNorm) sliced along its output dim, group ``g`` = the entries Torch-Pruning maps to root
    index ``g``.  The network's output layer (no layer consumes its outputs) is skipped.
    """
    if example_input is None:
        raise ConfigError(f"`groups` {structure!r} needs an example input to trace the network's channel coupling")
    graph = dependency_graph(net, example_input)
    order = {module: position for position, (_, module) in enumerate(net.named_modules())}
    names = {module: name for name, module in net.named_modules()}
    in_scope = set(layers.values())
    groupings: list[tuple[int, Grouping]] = []
    seen: set[nn.Module] = set()
    for group in graph.get_all_groups(root_module_types=list(_CHANNEL_LAYERS)):
        root = group.items[0].dep.target.module
        if root in seen:
            continue
        pairs: dict[nn.Module, list[tuple[int, int]]] = {}
        consumed = False
        for item in group.items:
            module, handler = item.dep.target.module, item.dep.handler
            if not graph.is_out_channel_pruning_fn(handler):
                consumed |= isinstance(module, _CHANNEL_LAYERS)
            elif module in names:
                pairs.setdefault(module, []).extend(zip(item.root_idxs, item.idxs))
        seen.update(pairs)
        if not consumed or not isinstance(root, roots) or root not in in_scope:
            continue
        n_groups = len(group.items[0].idxs)
        kept = sorted((m for m in pairs if (isinstance(m, producers) and m in in_scope) or isinstance(m, _NORMS)),
                      key=order.__getitem__)
        members = [_slices(f"{names[module]}.{attr}", getattr(module, attr), pairs[module], n_groups)
                   for module in kept for attr in ("weight", "bias")
                   if isinstance(getattr(module, attr, None), nn.Parameter)]
        first = next(m for m in kept if isinstance(m, producers))  # names the grouping: its first producer
        conv = isinstance(first, nn.Conv2d)
        groupings.append((order[first], Grouping(f"{names[first]}:{'channels' if conv else 'units'}",
                                                 "channel" if conv else "unit", tuple(members))))
    return [grouping for _, grouping in sorted(groupings, key=lambda pair: pair[0])]


def _input_units(layers: Mapping[str, nn.Module]) -> list[Grouping]:
    """Each Linear layer's input units: the columns of its weight, ``d = out_features``."""
    return [Grouping(f"{name}:inputs", "input-unit", (along(f"{name}.weight", layer.weight.shape, 1),))
            for name, layer in layers.items() if isinstance(layer, nn.Linear)]


@register_structure("weight", "no groups: one prior scale per weight (the per-weight priors; the default)")
def weight_structure(net: nn.Module, example_input: Tensor | None, layers: Mapping[str, nn.Module]) -> list[Grouping]:
    """No groupings."""
    return []


@register_structure("unit", "Bayesian Compression's units: each convolution's output channels (filter, bias, "
                    "BatchNorm entries; channels coupled by residual sums as one group over all producers) and "
                    "each Linear layer's input units (weight columns)")
def unit_structure(net: nn.Module, example_input: Tensor | None, layers: Mapping[str, nn.Module]) -> list[Grouping]:
    """Conv2d output channels (coupled) + Linear input units (see the module docstring)."""
    channels: list[Grouping] = []
    if any(isinstance(layer, nn.Conv2d) for layer in layers.values()):
        channels = _coupled_groupings(net, example_input, layers, (nn.Conv2d,), (nn.Conv2d,), "unit")
    return channels + _input_units(layers)


@register_structure("out-unit", "output units of Linear layers (row and bias) and output channels of "
                    "convolutions (coupled as in unit); the network's output layer excluded")
def out_unit_structure(net: nn.Module, example_input: Tensor | None,
                       layers: Mapping[str, nn.Module]) -> list[Grouping]:
    """Output channels and output units of every in-scope layer but the network's output layer."""
    return _coupled_groupings(net, example_input, layers, _CHANNEL_LAYERS, _CHANNEL_LAYERS, "out-unit")


@register_structure("bn-scale", "Network Slimming: one group per BatchNorm scale (d = 1); weights stay prior-free")
def bn_scale_structure(net: nn.Module, example_input: Tensor | None,
                       layers: Mapping[str, nn.Module]) -> list[Grouping]:
    """Each affine BatchNorm's weight, one group per channel."""
    groupings = [Grouping(f"{name}:scales", "bn-scale", (along(f"{name}.weight", module.weight.shape, 0),))
                 for name, module in net.named_modules()
                 if isinstance(module, _NORMS) and isinstance(module.weight, nn.Parameter)]
    if not groupings:
        raise ConfigError("`groups` 'bn-scale' needs BatchNorm layers with a learnable scale; the network has none")
    return groupings


# ----------------------------------------------------------------- transformers
def attention_heads(net: nn.Module, name: str, q: str, k: str, v: str, out: str, n_heads: int) -> Grouping:
    """One group per attention head of ``net``: its rows of Q, K, V (weights, biases) and its columns of ``out``.

    ``q, k, v, out`` are Linear module names in ``net``; head ``h`` owns the rows
    ``h * head_dim .. (h + 1) * head_dim - 1`` of each (``head_dim = out.in_features / n_heads``).
    A fused projection (``q == k == v``, ``3 * n_heads * head_dim`` outputs, Q then K then V)
    gives head ``h`` those rows of each third.  The grouping is named ``"<name>:heads"``.
    """
    projection = _linear(net, out)
    head_dim = _split(out, projection.in_features, n_heads)
    members: list[Slices] = []
    for layer_name in dict.fromkeys((q, k, v)):  # a fused projection once
        layer = _linear(net, layer_name)
        thirds = 3 if q == k == v else 1
        if layer.out_features != thirds * n_heads * head_dim:
            raise ConfigError(f"{layer_name!r}: {layer.out_features} outputs, expected {thirds} x {n_heads} heads "
                              f"x {head_dim}")
        rows = torch.arange(layer.out_features).reshape(thirds, n_heads, head_dim).transpose(0, 1)
        index = rows.reshape(n_heads, thirds * head_dim)
        for attr in ("weight", "bias"):
            param = getattr(layer, attr)
            if param is not None:
                members.append(Slices(f"{layer_name}.{attr}", 0, index, tuple(param.shape)))
    members.append(along(f"{out}.weight", projection.weight.shape, 1, head_dim))
    return Grouping(f"{name}:heads", "head", tuple(members))


def mlp_units(net: nn.Module, name: str, fc1: str, fc2: str) -> Grouping:
    """One group per hidden unit of a two-layer MLP of ``net``: row ``j`` of ``fc1`` (and its bias), column ``j`` of ``fc2``.

    ``fc1, fc2`` are Linear module names in ``net``; the grouping is named ``"<name>:units"``.
    """
    first, second = _linear(net, fc1), _linear(net, fc2)
    if first.out_features != second.in_features:
        raise ConfigError(f"{fc1!r} has {first.out_features} outputs but {fc2!r} takes {second.in_features} inputs")
    members = [along(f"{fc1}.weight", first.weight.shape, 0)]
    if first.bias is not None:
        members.append(along(f"{fc1}.bias", first.bias.shape, 0))
    members.append(along(f"{fc2}.weight", second.weight.shape, 1))
    return Grouping(f"{name}:units", "mlp-unit", tuple(members))


def _linear(net: nn.Module, name: str) -> nn.Linear:
    try:
        layer = net.get_submodule(name)
    except AttributeError as err:
        raise ConfigError(f"the network has no layer {name!r}") from err
    if not isinstance(layer, nn.Linear):
        raise ConfigError(f"{name!r} is a {type(layer).__name__}, not a Linear layer")
    return layer


def _split(name: str, features: int, n_heads: int) -> int:
    """``features / n_heads``, or ConfigError if it does not divide."""
    if n_heads < 1 or features % n_heads:
        raise ConfigError(f"{name!r}: {features} features do not split into {n_heads} heads")
    return features // n_heads
