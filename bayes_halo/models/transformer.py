"""Pre-norm transformer blocks whose heads and MLP units are slices of plain ``nn.Linear`` layers.

Attention of block ``l`` with ``H`` heads of ``D`` dimensions, input ``X [T, d]``:

    Q_h = X Wq[hD:(h+1)D]^T + bq[hD:(h+1)D]      (likewise K_h, V_h)
    A_h = softmax(Q_h K_h^T / sqrt(D) + M)         (M = -inf above the diagonal when causal)
    attn(X) = sum_h A_h V_h Wout[:, hD:(h+1)D]^T + bout

so head ``h`` is rows ``hD .. (h+1)D - 1`` of ``q``, ``k``, ``v`` (weights and biases) and the same
columns of ``out``.  The MLP is ``fc2(gelu(fc1(X)))``: unit ``j`` is row ``j`` of ``fc1`` with its bias
and column ``j`` of ``fc2``.  A block is ``X + attn(LN1(X))`` then ``X + mlp(LN2(X))``.

Heads and hidden widths may differ between blocks (a shrunk network); a block with no head (no
unit) adds only ``bout`` (``fc2``'s bias), the constant that its zeroed heads (units) left behind.
"""
from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..atomic import atomic_path
from ..errors import ConfigError


class SelfAttention(nn.Module):
    """Multi-head self-attention with explicit ``q``, ``k``, ``v`` and ``out`` projections (see module docstring)."""

    def __init__(self, width: int, n_heads: int, head_dim: int, causal: bool) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.causal = n_heads, head_dim, causal
        inner = n_heads * head_dim
        self.q, self.k, self.v = (nn.Linear(width, inner) for _ in range(3))
        self.out = nn.Linear(inner, width)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        if self.n_heads == 0:
            return self.out.bias.expand_as(x)
        q, k, v = (proj(x).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
                   for proj in (self.q, self.k, self.v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if self.causal:
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        heads = scores.softmax(-1) @ v  # [B, H, T, D]
        return self.out(heads.transpose(1, 2).reshape(batch, length, self.n_heads * self.head_dim))


class MLP(nn.Module):
    """``fc2(gelu(fc1(x)))``; hidden unit ``j`` is row ``j`` of ``fc1`` (and its bias) and column ``j`` of ``fc2``."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        if self.fc1.out_features == 0:
            return self.fc2.bias.expand_as(x)
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block: ``x + attn(LN1(x))``, then ``x + mlp(LN2(x))``."""

    def __init__(self, width: int, n_heads: int, head_dim: int, hidden: int, causal: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, n_heads, head_dim, causal)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, hidden)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of :class:`Block`; ``heads[l]`` heads of ``head_dim`` and ``hidden[l]`` MLP units in block ``l``.

    Subclasses embed the input into ``[B, T, width]`` and read the output; this class owns the
    blocks, their groupings (heads and MLP units) and the physical shrink.
    """

    def __init__(self, width: int, heads: Sequence[int], head_dim: int, hidden: Sequence[int],
                 causal: bool) -> None:
        super().__init__()
        if len(heads) != len(hidden) or not heads:
            raise ConfigError(f"heads {list(heads)} and hidden {list(hidden)} must give one entry per layer")
        if min(heads) < 0 or min(hidden) < 0 or width < 1 or head_dim < 1:
            raise ConfigError("width, head_dim, heads and hidden units must be positive (heads and units may be 0)")
        self.width, self.head_dim, self.causal = width, head_dim, causal
        self.blocks = nn.ModuleList(Block(width, h, head_dim, m, causal) for h, m in zip(heads, hidden))

    @property
    def heads(self) -> list[int]:
        """Heads per block."""
        return [block.attn.n_heads for block in self.blocks]

    @property
    def hidden(self) -> list[int]:
        """MLP units per block."""
        return [block.mlp.fc1.out_features for block in self.blocks]

    def block_multiply_adds(self, length: int) -> int:
        """Multiply-adds of the blocks on ``length`` tokens (one example; LayerNorms, softmax and GELU not counted).

        Per block: ``4 T d H D`` for q, k, v and out, ``2 T^2 H D`` for ``Q K^T`` and ``A V`` (every pair,
        also when causal), ``2 T d M`` for the MLP.
        """
        return sum(4 * length * self.width * h * self.head_dim + 2 * length ** 2 * h * self.head_dim
                   + 2 * length * self.width * m for h, m in zip(self.heads, self.hidden))

    def encode(self, x: Tensor) -> Tensor:
        """The blocks applied to embedded tokens ``x [B, T, width]``."""
        for block in self.blocks:
            x = block(x)
        return x

    def bayes_halo_groupings(self, structure: str) -> list | None:
        """Groupings ``blocks.<l>.attn:heads`` and ``blocks.<l>.mlp:units`` for ``structure="unit"``; else None.

        None lets the structure's own builder decide (``weight``: per-weight priors).
        """
        if structure != "unit":
            return None
        from ..groups import attention_heads, mlp_units  # the group machinery (branch `groups`)
        groupings = []
        for i, block in enumerate(self.blocks):
            prefix = f"blocks.{i}"
            if block.attn.n_heads:
                groupings.append(attention_heads(self, f"{prefix}.attn", *(f"{prefix}.attn.{p}" for p in "qkv"),
                                                 f"{prefix}.attn.out", block.attn.n_heads))
            if block.mlp.fc1.out_features:
                groupings.append(mlp_units(self, f"{prefix}.mlp", f"{prefix}.mlp.fc1", f"{prefix}.mlp.fc2"))
        return groupings

    def alive(self) -> tuple[list[Tensor], list[Tensor]]:
        """Boolean ``[H_l]`` and ``[M_l]`` per block: heads and units whose contribution is not exactly zero.

        A head is dead when its columns of ``out`` are zero, or its rows of ``v`` and their bias are
        (then ``A_h V_h = 0``); a unit when its column of ``fc2`` is zero, or its row of ``fc1`` and its
        bias are (``gelu(0) = 0``).
        """
        heads, units = [], []
        for block in self.blocks:
            attn, mlp = block.attn, block.mlp
            out_cols = attn.out.weight.detach().reshape(self.width, attn.n_heads, self.head_dim)
            v_rows = torch.cat([attn.v.weight.detach(), attn.v.bias.detach()[:, None]], 1)
            v_rows = v_rows.reshape(attn.n_heads, -1)
            heads.append(out_cols.ne(0).any(2).any(0) & v_rows.ne(0).any(1))
            fc1 = torch.cat([mlp.fc1.weight.detach(), mlp.fc1.bias.detach()[:, None]], 1)
            units.append(mlp.fc2.weight.detach().ne(0).any(0) & fc1.ne(0).any(1))
        return heads, units

    @torch.no_grad()
    def bayes_halo_shrunk(self) -> "Transformer":
        """A copy without the dead heads and units (:meth:`alive`): the same outputs, fewer multiply-adds.

        Removing a dead head or unit drops a term that is exactly zero, so the outputs agree up to
        float rounding.  Pruning masks must be made permanent first (``remove_masks``).
        """
        heads, units = self.alive()
        clone = copy.deepcopy(self)
        with warnings.catch_warnings():  # torch warns that initialising a block with no head or unit is a no-op
            warnings.simplefilter("ignore", UserWarning)
            clone.blocks = nn.ModuleList(Block(self.width, int(h.sum()), self.head_dim, int(m.sum()), self.causal)
                                         for h, m in zip(heads, units))
        reference = next(self.parameters())
        clone.blocks.to(device=reference.device, dtype=reference.dtype)
        copy_shrunk_blocks(self, clone, heads, units)
        return clone


def head_rows(keep: Tensor, head_dim: int) -> Tensor:
    """Row indices of the kept heads ``keep [H]`` (bool) in a ``[H * head_dim, ...]`` projection."""
    return (keep.nonzero().flatten()[:, None] * head_dim + torch.arange(head_dim, device=keep.device)).flatten()


@torch.no_grad()
def copy_shrunk_blocks(source: Transformer, target: Transformer, heads: Sequence[Tensor],
                       units: Sequence[Tensor]) -> None:
    """Copy ``source``'s blocks into ``target`` (built with the kept counts), keeping heads/units marked True."""
    for src, dst, keep_h, keep_m in zip(source.blocks, target.blocks, heads, units):
        rows = head_rows(keep_h, source.head_dim)
        for name in ("q", "k", "v"):
            getattr(dst.attn, name).weight.copy_(getattr(src.attn, name).weight[rows])
            getattr(dst.attn, name).bias.copy_(getattr(src.attn, name).bias[rows])
        dst.attn.out.weight.copy_(src.attn.out.weight[:, rows])
        dst.attn.out.bias.copy_(src.attn.out.bias)
        kept = keep_m.nonzero().flatten()
        dst.mlp.fc1.weight.copy_(src.mlp.fc1.weight[kept])
        dst.mlp.fc1.bias.copy_(src.mlp.fc1.bias[kept])
        dst.mlp.fc2.weight.copy_(src.mlp.fc2.weight[:, kept])
        dst.mlp.fc2.bias.copy_(src.mlp.fc2.bias)
        dst.norm1.load_state_dict(src.norm1.state_dict())
        dst.norm2.load_state_dict(src.norm2.state_dict())


def save_program(net: nn.Module, example: Tensor, path: str | Path) -> Path:
    """Write ``net`` as a ``torch.export`` program (any batch size), loadable with torch alone.

    ``torch.export.load(path).module()`` is a module with ``net``'s outputs; no bayes_halo needed.
    """
    program = torch.export.export(net.eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    with atomic_path(path) as temporary:
        torch.export.save(program, temporary)
    return Path(path)
