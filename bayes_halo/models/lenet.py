"""The LeNet family used in the paper's MNIST experiments (inputs: pixels in [0, 1], no normalisation).

All take ``input_shape = (C, H, W)`` and ``n_classes`` and map ``[n, C, H, W]`` to logits ``[n, n_classes]``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError

_MNIST_SHAPE = (1, 28, 28)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)``: ``y[.., i, j] = max(x[.., 2i, 2j], x[.., 2i, 2j+1], x[.., 2i+1, 2j], x[.., 2i+1, 2j+1])``.

    The same values (floor mode: an odd last row or column is dropped), computed as the elementwise
    maximum of the four strided corners: about 5x faster than torch's NCHW ``max_pool2d`` kernel on
    this project's CPU at batch 256, where that kernel, not the convolutions, dominated a channel-pruned
    LeNet-5-Caffe (``benchmarks/structured_speed.py``).  A gradient goes to the window's maximum; on an
    exact tie ``torch.maximum`` splits it where ``max_pool2d`` gives it to one entry.
    """
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                         torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


def _check_shape(model: str, input_shape: tuple[int, int, int], n_classes: int) -> None:
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise ConfigError(f"{model}: input_shape must be (channels, height, width), got {tuple(input_shape)}")
    if n_classes < 2:
        raise ConfigError(f"{model}: n_classes={n_classes} must be at least 2")


def _require_mnist_shape(model: str, input_shape: tuple[int, int, int]) -> None:
    if tuple(input_shape) != _MNIST_SHAPE:
        shape = "x".join(str(d) for d in input_shape)
        raise ConfigError(f"{model} needs 1x28x28 inputs (MNIST), got {shape}: "
                          "use lenet300 for other input shapes (e.g. the 8x8 digits)")


class LeNet300100(nn.Module):
    """LeNet-300-100: flatten, fc1 ``D -> 300``, ReLU, fc2 ``300 -> 100``, ReLU, fc3 ``100 -> K``.

    ``D = C * H * W``; works on any input shape. On MNIST (D = 784, K = 10): 266,610 parameters
    (266,200 weights, 410 biases).
    """

    def __init__(self, input_shape: tuple[int, int, int] = _MNIST_SHAPE, n_classes: int = 10) -> None:
        super().__init__()
        _check_shape("lenet300", input_shape, n_classes)
        self.fc1 = nn.Linear(math.prod(input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Classic LeNet-5 (the authors' MNIST script), for 1x28x28 inputs; 61,706 parameters for K = 10.

    conv1 ``1 -> 6`` 5x5 pad 2, ReLU, maxpool 2 (6x14x14); conv2 ``6 -> 16`` 5x5, ReLU, maxpool 2
    (16x5x5); flatten; fc1 ``400 -> 120``, ReLU, fc2 ``120 -> 84``, ReLU, fc3 ``84 -> K``.
    """

    def __init__(self, input_shape: tuple[int, int, int] = _MNIST_SHAPE, n_classes: int = 10) -> None:
        super().__init__()
        _check_shape("lenet5", input_shape, n_classes)
        _require_mnist_shape("lenet5", input_shape)
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = max_pool_2x2(F.relu(self.conv1(x)))
        x = max_pool_2x2(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5Caffe(nn.Module):
    """LeNet-5-Caffe (the literature's "LeNet-5"), for 1x28x28 inputs; 431,080 parameters for K = 10.

    conv1 ``1 -> 20`` 5x5, ReLU, maxpool 2 (20x12x12); conv2 ``20 -> 50`` 5x5, ReLU, maxpool 2
    (50x4x4); flatten; fc1 ``800 -> 500``, ReLU, fc2 ``500 -> K``. The ReLUs after the convolutions
    follow the Sparse VD / L0 reimplementations (Caffe's prototxt has none there).
    """

    def __init__(self, input_shape: tuple[int, int, int] = _MNIST_SHAPE, n_classes: int = 10) -> None:
        super().__init__()
        _check_shape("lenet5-caffe", input_shape, n_classes)
        _require_mnist_shape("lenet5-caffe", input_shape)
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = max_pool_2x2(F.relu(self.conv1(x)))
        x = max_pool_2x2(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)
