"""The option-A ResNet shortcut as a layer whose channels Torch-Pruning can remove on both sides.

:class:`~bayes_halo.models.resnet_cifar.ZeroPadShortcut` computes ``x[:, :, ::s, ::s]`` followed by
``extra`` zero channels.  :class:`ChannelScatter` computes the same with explicit channel maps,
``out[:, index[k]] = x[:, source[k], ::s, ::s]`` and zeros elsewhere, so that removing input
channels (drop the entries reading them) or output positions (drop and renumber) keeps it exact.
Output position ``p`` is produced as zero when no entry writes it; input channel ``i`` is unused
when no entry reads it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch_pruning as tp
from torch import Tensor, nn

from ..models.resnet_cifar import ZeroPadShortcut


class ChannelScatter(nn.Module):
    """``out[:, index] = x[:, source, ::stride, ::stride]``, ``out_channels`` channels, zeros elsewhere."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.register_buffer("source", torch.arange(in_channels))
        self.register_buffer("index", torch.arange(in_channels))

    def forward(self, x: Tensor) -> Tensor:
        picked = x[:, :, ::self.stride, ::self.stride].index_select(1, self.source)
        out = picked.new_zeros(picked.shape[0], self.out_channels, *picked.shape[2:])
        return out.index_copy(1, self.index, picked)


class ChannelScatterPruner(tp.pruner.BasePruningFunc):
    """Removing output positions or input channels of a :class:`ChannelScatter` (its two sides are not coupled)."""

    TARGET_MODULES = (ChannelScatter,)

    def prune_out_channels(self, layer: ChannelScatter, idxs: Sequence[int]) -> ChannelScatter:
        kept = _kept(layer.out_channels, idxs, layer.index.device)
        entries = kept[layer.index]
        position = kept.long().cumsum(0) - 1
        layer.source, layer.index = layer.source[entries], position[layer.index[entries]]
        layer.out_channels = int(kept.sum())
        return layer

    def prune_in_channels(self, layer: ChannelScatter, idxs: Sequence[int]) -> ChannelScatter:
        kept = _kept(layer.in_channels, idxs, layer.source.device)
        entries = kept[layer.source]
        channel = kept.long().cumsum(0) - 1
        layer.source, layer.index = channel[layer.source[entries]], layer.index[entries]
        layer.in_channels = int(kept.sum())
        return layer

    def get_out_channels(self, layer: ChannelScatter) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: ChannelScatter) -> int:
        return layer.in_channels


def _kept(n: int, removed: Sequence[int], device: torch.device) -> Tensor:
    kept = torch.ones(n, dtype=torch.bool, device=device)
    kept[list(removed)] = False
    return kept


def replace_zero_pad_shortcuts(net: nn.Module, example: Tensor) -> None:
    """Swap (in place) every ZeroPadShortcut of ``net`` for the equivalent :class:`ChannelScatter`."""
    widths: dict[nn.Module, int] = {}

    def record(module: nn.Module, args: tuple) -> None:
        widths[module] = args[0].shape[1]

    hooks = [m.register_forward_pre_hook(record) for m in net.modules() if isinstance(m, ZeroPadShortcut)]
    try:
        with torch.no_grad():
            net(example)
    finally:
        for h in hooks:
            h.remove()
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ZeroPadShortcut):
                c = widths[child]
                setattr(parent, name, ChannelScatter(c, c + child.extra, child.stride))
