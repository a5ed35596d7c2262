"""VGG-16 with BatchNorm in the CIFAR variant used by the paper (and most CIFAR pruning papers).

13 x [conv 3x3 (padding 1, with bias) -> BatchNorm -> ReLU], 2x2 max-pooling after the 2nd, 4th,
7th and 10th conv (32 -> 16 -> 8 -> 4 -> 2 pixels), 2x2 average pooling, one Linear(512 -> K).
At the standard width: 14,710,464 conv weights + 4,224 conv biases, 8,448 BatchNorm parameters
and 512 K + K in the Linear layer (14,728,266 parameters for K = 10).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from .lenet import _check_shape

#: channels of the 13 convolutions in units of ``width`` (64 at the standard width); "M" = max-pool
_PLAN: tuple[int | str, ...] = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8)


class VGG16BN(nn.Module):
    """VGG-16-bn for 32x32 inputs (see the module docstring); ``width`` scales every layer (64: standard).

    Convolutions get He initialisation ``N(0, 2 / (9 * out_channels))`` and zero bias; BatchNorm
    starts at weight 1, bias 0.
    """

    def __init__(self, input_shape: tuple[int, int, int] = (3, 32, 32), n_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        _check_shape("vgg16-bn", input_shape, n_classes)
        if tuple(input_shape[1:]) != (32, 32):
            raise ConfigError(f"vgg16-bn needs 32x32 images (CIFAR), got {input_shape[1]}x{input_shape[2]}")
        if width < 1:
            raise ConfigError(f"vgg16-bn: width={width} must be at least 1")
        layers: list[nn.Module] = []
        channels = int(input_shape[0])
        for item in _PLAN:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            out = int(item) * width
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, n_classes)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.avg_pool2d(self.features(x), 2).flatten(1))
