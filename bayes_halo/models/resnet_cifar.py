"""CIFAR ResNets: He et al.'s 6n+2 family (ResNet-20, -56, the paper's depth-50) and the CIFAR ResNet-18.

All use basic blocks ``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))`` without conv biases,
a 3x3 stem without max-pooling, global average pooling and one Linear layer. Where a block changes
the shape (stride 2, more channels) the shortcut is

* option A (``"A"``, He et al.'s CIFAR networks): ``x[:, :, ::2, ::2]`` with zero channels appended,
  no parameters; used by ``resnet20`` (269,722 parameters for K = 10) and ``resnet56`` (853,018);
* option B (``"B"``): a 1x1 conv with stride 2 followed by BatchNorm; used by ``resnet50-cifar``,
  the paper's depth-50 net (n = 8, widths 16/32/64: 51 convolutions, 754,096 conv weights,
  758,554 parameters for K = 10), and ``resnet18-cifar`` (stages of 2 blocks, widths 64..512,
  11,173,962 parameters for K = 10), the variant most recent pruning papers report.

Convolutions get He initialisation ``N(0, 2 / (k^2 out_channels))``; BatchNorm starts at 1, 0.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from .lenet import _check_shape

Shortcut = Literal["A", "B"]


class ZeroPadShortcut(nn.Module):
    """Option A: ``x[:, :, ::stride, ::stride]`` followed by ``extra`` zero channels (no parameters)."""

    def __init__(self, extra: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = extra, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; ``conv1`` carries the stride."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: Shortcut) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                if planes < in_planes:
                    raise ConfigError(f"option-A shortcut cannot reduce channels ({in_planes} -> {planes})")
                self.shortcut = ZeroPadShortcut(planes - in_planes, stride)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                              nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv 3x3 (``widths[0]``) -> BN -> ReLU, ``stages`` of basic blocks, global average pool, Linear.

    Stage ``s`` has ``blocks[s]`` blocks of ``widths[s]`` channels; every stage after the first
    starts with stride 2. Works on any image size (global pooling).
    """

    def __init__(self, input_shape: tuple[int, int, int], n_classes: int, blocks: Sequence[int],
                 widths: Sequence[int], shortcut: Shortcut, name: str = "cifar-resnet") -> None:
        super().__init__()
        _check_shape(name, input_shape, n_classes)
        if len(blocks) != len(widths) or not blocks or min(blocks) < 1 or min(widths) < 1:
            raise ConfigError(f"{name}: need one positive width per stage and at least one block per stage, "
                              f"got blocks={tuple(blocks)}, widths={tuple(widths)}")
        if shortcut not in ("A", "B"):
            raise ConfigError(f"{name}: unknown shortcut {shortcut!r}; choose 'A' or 'B'")
        self.conv1 = nn.Conv2d(int(input_shape[0]), widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages: list[nn.Module] = []
        planes = widths[0]
        for index, (count, width) in enumerate(zip(blocks, widths)):
            layers = []
            for b in range(count):
                layers.append(BasicBlock(planes, width, 2 if index > 0 and b == 0 else 1, shortcut))
                planes = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(planes, n_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def _six_n_plus_two(name: str, n: int, shortcut: Shortcut) -> Callable[[tuple[int, int, int], int], CifarResNet]:
    """Factory of the depth-``6n + 2`` CIFAR ResNet (3 stages of ``n`` blocks, widths 16/32/64)."""
    def factory(input_shape: tuple[int, int, int] = (3, 32, 32), n_classes: int = 10) -> CifarResNet:
        return CifarResNet(input_shape, n_classes, (n, n, n), (16, 32, 64), shortcut, name)
    factory.__name__ = factory.__qualname__ = name.replace("-", "_")
    factory.__doc__ = f"{name}: depth {6 * n + 2} = 6 x {n} + 2, widths 16/32/64, option-{shortcut} shortcuts."
    return factory


resnet20 = _six_n_plus_two("resnet20", 3, "A")
resnet56 = _six_n_plus_two("resnet56", 9, "A")
resnet50_cifar = _six_n_plus_two("resnet50-cifar", 8, "B")


def resnet18_cifar(input_shape: tuple[int, int, int] = (3, 32, 32), n_classes: int = 10) -> CifarResNet:
    """resnet18-cifar: 4 stages of 2 blocks, widths 64/128/256/512, 3x3 stem, option-B shortcuts."""
    return CifarResNet(input_shape, n_classes, (2, 2, 2, 2), (64, 128, 256, 512), "B", "resnet18-cifar")
