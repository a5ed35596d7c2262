"""``char-transformer``: a decoder-only (GPT-style, causal) character model built from :mod:`.transformer`.

``x [B, T]`` character indices -> ``Embedding(V, d)`` + a learned position embedding -> causal blocks
-> LayerNorm -> ``Linear(d, V)``: logits ``[B, T, V]`` where position ``t`` predicts character
``t + 1`` from characters ``0 .. t``.  Defaults: width 64, 4 layers of 4 heads of 16, 128 MLP units per layer.
``input_shape = (T,)`` is the context length; ``n_classes = V`` the vocabulary size.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .transformer import Transformer


class CharTransformer(Transformer):
    """Causal character transformer; ``heads``/``hidden`` per layer (a shrunk network has fewer)."""

    def __init__(self, input_shape: tuple[int, ...] = (64,), n_classes: int = 100, width: int = 64,
                 heads: Sequence[int] = (4, 4, 4, 4), head_dim: int = 16,
                 hidden: Sequence[int] = (128, 128, 128, 128)) -> None:
        super().__init__(width, heads, head_dim, hidden, causal=True)
        if len(input_shape) != 1 or int(input_shape[0]) < 1:
            raise ConfigError(f"char-transformer: input_shape must be (context length,), got {tuple(input_shape)}; "
                              "use a text data set such as --dataset stdlib-text")
        if n_classes < 2:
            raise ConfigError(f"char-transformer: vocabulary of {n_classes} characters must have at least 2")
        self.context = int(input_shape[0])
        self.embed = nn.Embedding(n_classes, width)
        self.position = nn.Parameter(torch.randn(self.context, width) * 0.02)
        self.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[1]
        return self.lm_head(self.norm(self.encode(self.embed(x) + self.position[:length])))

    def multiply_adds(self) -> int:
        """Multiply-adds per sequence of ``context`` characters: blocks and the output layer."""
        return self.block_multiply_adds(self.context) + self.context * self.width * self.lm_head.out_features
