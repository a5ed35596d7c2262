"""``vit-tiny``: a small Vision Transformer for MNIST (pre-norm, mean pooling), built from :mod:`.transformer`.

``x [B, C, H, W]`` -> ``(H/p)(W/p)`` patches of ``C p p`` pixels -> ``Linear(C p p, d)`` + a learned
position embedding -> blocks -> LayerNorm -> mean over tokens -> ``Linear(d, K)``.  Defaults: 7x7
patches (16 tokens on 28x28), width 64, 4 layers of 4 heads of 16, 128 MLP units per layer.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .lenet import _check_shape
from .transformer import Transformer


class ViTTiny(Transformer):
    """Vision Transformer; ``heads``/``hidden`` per layer (a shrunk network has fewer)."""

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28), n_classes: int = 10, patch: int = 7,
                 width: int = 64, heads: Sequence[int] = (4, 4, 4, 4), head_dim: int = 16,
                 hidden: Sequence[int] = (128, 128, 128, 128)) -> None:
        super().__init__(width, heads, head_dim, hidden, causal=False)
        _check_shape("vit-tiny", input_shape, n_classes)
        channels, height, width_px = input_shape
        if height % patch or width_px % patch:
            raise ConfigError(f"vit-tiny: {height}x{width_px} images do not split into {patch}x{patch} patches")
        self.patch = patch
        self.tokens = (height // patch) * (width_px // patch)
        self.embed = nn.Linear(channels * patch * patch, width)
        self.position = nn.Parameter(torch.randn(self.tokens, width) * 0.02)
        self.norm = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, n_classes)

    def patches(self, x: Tensor) -> Tensor:
        """``[B, C, H, W] -> [B, (H/p)(W/p), C p p]``, patches in row-major order."""
        batch, channels, height, width = x.shape
        p = self.patch
        x = x.reshape(batch, channels, height // p, p, width // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(batch, (height // p) * (width // p), channels * p * p)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.encode(self.embed(self.patches(x)) + self.position)
        return self.classifier(self.norm(tokens).mean(1))

    def multiply_adds(self) -> int:
        """Multiply-adds per image: patch embedding, blocks, classifier."""
        return (self.tokens * self.embed.in_features * self.width + self.block_multiply_adds(self.tokens)
                + self.width * self.classifier.out_features)
