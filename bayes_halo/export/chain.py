"""Trace a network into a plain chain of ``torch.nn`` layers (the only graphs export shrinks).

``trace_chain(net)`` runs ``torch.fx.symbolic_trace`` on ``net`` in eval mode and accepts a
graph in which every node feeds exactly the next one:

* ``Linear`` and ``Conv2d`` (``groups=1``, zero padding mode): the layers whose units are removed;
* per-channel layers that keep a constant channel constant: ``ReLU``, ``LeakyReLU``, ``ELU``,
  ``GELU``, ``SiLU``, ``Tanh``, ``Sigmoid`` (modules or their functions), ``MaxPool2d``,
  ``AvgPool2d`` (no padding), ``AdaptiveAvgPool2d``, ``BatchNorm1d/2d`` (eval statistics);
* ``flatten(1)`` (``x.flatten(1)``, ``torch.flatten(x, 1)``, ``nn.Flatten()``);
* ``Dropout`` and ``Identity``, dropped (identities in eval mode).

A branching graph (a residual connection, a concatenation) or any other operation raises
:class:`~bayes_halo.errors.ConfigError` naming the node: such networks are not shrunk.
"""
from __future__ import annotations

import copy

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError

PRUNABLE = (nn.Linear, nn.Conv2d)
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
DROPPED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
SUPPORTED = ("Linear, Conv2d, ReLU, LeakyReLU, ELU, GELU, SiLU, Tanh, Sigmoid, MaxPool2d, AvgPool2d, "
             "AdaptiveAvgPool2d, BatchNorm1d/2d, flatten(1), Dropout, Identity in a single chain")

_FUNCTIONS = {F.relu: nn.ReLU, torch.relu: nn.ReLU, torch.tanh: nn.Tanh, torch.sigmoid: nn.Sigmoid,
              F.tanh: nn.Tanh, F.sigmoid: nn.Sigmoid, F.silu: nn.SiLU}
_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


def trace_chain(net: nn.Module) -> tuple[list[str], list[nn.Module]]:
    """Names and copies of the layers of ``net``, in order, such that ``nn.Sequential(*layers)`` is ``net``."""
    was_training = net.training
    net.eval()
    try:
        graph = fx.symbolic_trace(net).graph
    except Exception as err:
        raise ConfigError(f"export cannot trace {type(net).__name__} with torch.fx ({type(err).__name__}: "
                          f"{err}); supported: {SUPPORTED}") from None
    finally:
        net.train(was_training)
    names: list[str] = []
    layers: list[nn.Module] = []
    previous = None
    for node in graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                raise ConfigError(f"export supports networks with one input; {node.name!r} is a second one")
            previous = node
            continue
        inputs = [a for a in node.all_input_nodes]
        if inputs != [previous] or (node.op != "output" and len(previous.users) != 1):
            raise ConfigError(f"{type(net).__name__} is not a chain at {node.name!r} (a branch, residual "
                              f"connection or concatenation): export shrinks only {SUPPORTED}")
        if node.op == "output":
            break
        layer = _as_layer(net, node)
        if layer is not None and not isinstance(layer, DROPPED):
            names.append(str(node.target) if node.op == "call_module" else node.name)
            layers.append(layer)
        previous = node
    return names, layers


def _as_layer(net: nn.Module, node: fx.Node) -> nn.Module | None:
    """The ``torch.nn`` layer that computes ``node`` (a copy), or a ConfigError."""
    if node.op == "call_module":
        module = net.get_submodule(node.target)
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"
                                              or isinstance(module.padding, str)):
            raise ConfigError(f"export supports Conv2d with groups=1, numeric zero padding; {node.target!r} is not")
        if isinstance(module, nn.AvgPool2d) and _nonzero(module.padding) and module.count_include_pad:
            raise ConfigError(f"export: AvgPool2d {node.target!r} with padding is not supported")
        if isinstance(module, NORMS) and module.running_mean is None:
            raise ConfigError(f"export: BatchNorm {node.target!r} has no running statistics")
        if isinstance(module, nn.Flatten):
            return _flatten(node, module.start_dim, module.end_dim)
        if isinstance(module, PRUNABLE + ELEMENTWISE + POOLS + NORMS + DROPPED):
            return copy.deepcopy(module).eval()
        raise ConfigError(f"export does not support layer {node.target!r} ({type(module).__name__}); "
                          f"supported: {SUPPORTED}")
    if node.op == "call_function" and node.target in _FUNCTIONS:
        return _FUNCTIONS[node.target]()
    if node.op == "call_function" and node.target is F.max_pool2d:
        kwargs = dict(zip(_POOL_ARGS, node.args[1:]), **node.kwargs)
        if kwargs.pop("return_indices", False):
            raise ConfigError(f"export: {node.name!r} returns pooling indices")
        return nn.MaxPool2d(**kwargs)
    if node.op == "call_function" and node.target is torch.flatten or node.op == "call_method" and node.target == "flatten":
        args = list(node.args[1:]) + [node.kwargs.get(k) for k in ("start_dim", "end_dim") if k in node.kwargs]
        return _flatten(node, *args)
    if node.op == "call_function" and node.target is F.dropout:
        if node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True):
            raise ConfigError(f"export: {node.name!r} calls F.dropout with training=True, so it drops even in eval mode")
        return nn.Identity()
    target = getattr(node.target, "__name__", node.target)
    raise ConfigError(f"export does not support the operation {target!r} at {node.name!r}; supported: {SUPPORTED}")


def _flatten(node: fx.Node, start_dim: int = 0, end_dim: int = -1) -> nn.Flatten:
    """``flatten(1)``: the only flattening export understands."""
    if start_dim != 1 or end_dim != -1:
        raise ConfigError(f"export supports flatten(1) only; {node.name!r} flattens dims {start_dim}..{end_dim}")
    return nn.Flatten()


def _nonzero(value) -> bool:
    """Whether an int or tuple setting (padding) is anything but zero."""
    return any(v != 0 for v in (value if isinstance(value, tuple) else (value,)))
