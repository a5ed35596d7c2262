"""The form a shrunk network is saved in: BatchNorm folded into its convolution, convolutions run channels-last.

* **Folding** (inference mode).  ``BN(y)_c = s_c (y_c - mu_c) + beta_c`` with ``s_c = gamma_c / sqrt(var_c + eps)``
  is affine per channel, so a convolution whose output feeds only that BatchNorm is one convolution,
  ``W'_c = s_c W_c`` and ``b'_c = s_c (b_c - mu_c) + beta_c``
  (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`); the BatchNorm becomes an identity.  The pairs come
  from the ``torch.export`` graph: a ``batch_norm`` whose input is a ``conv2d`` with no other user, each
  of the two modules called once.
* **Channels-last.**  A network with convolutions gets its input laid out NHWC; oneDNN's convolutions then
  keep the activations NHWC from layer to layer instead of re-laying them on every call.  The values do
  not change, only their order in memory (``x.contiguous(memory_format=torch.channels_last)``); a
  network whose forward needs NCHW memory (a ``.view`` after a convolution) keeps it.

Both change nothing a user sees except speed: the exported network's outputs are checked against the
masked network's (:func:`~.network.export_network`).
"""
from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

CONV, NORM = torch.ops.aten.conv2d.default, torch.ops.aten.batch_norm.default


class ChannelsLastInput(nn.Module):
    """``network(x.contiguous(memory_format=torch.channels_last))``: the same function, NHWC activations."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x.contiguous(memory_format=torch.channels_last))


def conv_batchnorm_pairs(net: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """``(conv name, batchnorm name)`` for each BatchNorm2d fed by a Conv2d alone (see the module docstring)."""
    graph = torch.export.export(net.eval(), (example,)).graph
    owner = {node: list(node.meta["nn_module_stack"].values())[-1][0]
             for node in graph.nodes if node.target in (CONV, NORM) and node.meta.get("nn_module_stack")}
    calls = Counter(owner.values())
    modules = dict(net.named_modules())
    pairs = []
    for node, name in owner.items():
        source = node.args[0]
        if node.target is not NORM or source not in owner or source.target is not CONV or len(source.users) != 1:
            continue
        conv_name = owner[source]
        if (calls[name] == calls[conv_name] == 1 and isinstance(modules.get(name), nn.BatchNorm2d)
                and modules[name].running_mean is not None and isinstance(modules.get(conv_name), nn.Conv2d)):
            pairs.append((conv_name, name))
    return pairs


def fold_batchnorms(net: nn.Module, example: Tensor) -> tuple[nn.Module, int]:
    """A copy of ``net`` with every :func:`conv_batchnorm_pairs` pair folded into one Conv2d; the pair count."""
    pairs = conv_batchnorm_pairs(net, example)
    folded = copy.deepcopy(net).eval()
    for conv_name, norm_name in pairs:
        _replace(folded, conv_name, fuse_conv_bn_eval(folded.get_submodule(conv_name), folded.get_submodule(norm_name)))
        _replace(folded, norm_name, nn.Identity())
    return folded, len(pairs)


def deployable(net: nn.Module, example: Tensor) -> tuple[nn.Module, list[str]]:
    """``net`` as it is saved: BatchNorms folded and, with any Conv2d, channels-last input; notes saying so."""
    folded, count = fold_batchnorms(net, example)
    notes = [f"{count} BatchNorm layers folded into their convolutions in the saved program"] if count else []
    if example.dim() != 4 or not any(isinstance(m, nn.Conv2d) for m in folded.modules()):
        return folded, notes
    channels_last = ChannelsLastInput(folded).eval()
    try:
        with torch.no_grad():
            channels_last(example)
    except RuntimeError as error:  # e.g. a ``.view`` that needs contiguous NCHW activations
        return folded, notes + [f"kept NCHW activations: channels-last fails in this network ({error})"]
    return channels_last, notes + ["the saved program runs its convolutions channels-last (NHWC)"]


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)
