"""Torch-Pruning's dependency graph of a network, with the package's own parameter-free layers taught to it.

Torch-Pruning traces ``net`` once on ``example_input`` and couples every channel index that must
be removed together (a convolution's output channel, its BatchNorm entry, the input channel of
each consumer, every producer added into the same residual sum).  It does not know the option-A
shortcut of He et al.'s CIFAR ResNets (:class:`~bayes_halo.models.resnet_cifar.ZeroPadShortcut`,
``x[:, :, ::s, ::s]`` with zero channels appended): traced as an element-wise op, it would couple
a stage's channels with the previous stage's.  Declared here as a layer of its own, the channels
on its two sides are separate indices (a stage's producers form one coupled set, the previous
stage's another), which is the structure the group priors need.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch_pruning as tp
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.resnet_cifar import ZeroPadShortcut


class ZeroPadShortcutPruner(tp.pruner.BasePruningFunc):
    """Option-A shortcut as a layer: ``out = in + extra`` channels, no coupling between the two sides.

    Only the graph is described; removing channels through the shortcut is not implemented here.
    """

    TARGET_MODULES = (ZeroPadShortcut,)

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise ConfigError("removing channels through an option-A (zero-padding) shortcut is not supported")

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:  # distinct: no coupling
        raise ConfigError("removing channels through an option-A (zero-padding) shortcut is not supported")

    def get_out_channels(self, layer: nn.Module) -> None:
        return None

    def get_in_channels(self, layer: nn.Module) -> None:
        return None


def dependency_graph(net: nn.Module, example_input: Tensor) -> tp.DependencyGraph:
    """``net``'s Torch-Pruning dependency graph, traced on ``example_input`` (a batch, eval mode)."""
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():  # Torch-Pruning traces through autograd
            return tp.DependencyGraph().build_dependency(
                net, example_inputs=example_input, verbose=False,
                customized_pruners={ZeroPadShortcut: ZeroPadShortcutPruner()})
    finally:
        net.train(was_training)
