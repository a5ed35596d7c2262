"""Batch transforms for images held as tensors: random crop + horizontal flip, per-channel normalisation.

Everything runs as a few batched tensor operations on the device of the batch (no per-image loop,
no DataLoader).  The random draws are separate from their use: :func:`crop_draws` takes them
from a passed ``torch.Generator`` (the trainer's lives on the CPU and draws a whole epoch at once,
so every device and every rank sees the same crops, and saving ``generator.get_state()`` with a
checkpoint makes a resumed run draw the same ones), :func:`random_crop_flip` applies them.

The standard CIFAR pipeline (``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``,
``ToTensor``, ``Normalize``) is reproduced in that order: the crop pads with black pixels (0)
*before* normalisation, then ``x = (bytes / 255 - mean) / std`` per channel.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

#: images per chunk when summing pixel moments (bounds the int64 temporaries to ~50 MB)
_STATS_CHUNK = 2048


def crop_draws(count: int, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Crop offsets and flips for ``count`` images, int64 ``[3, count]`` on the generator's device.

    Rows ``dy, dx`` uniform in ``0 .. 2 * padding`` (a shift of ``-padding .. padding``), row ``f``
    uniform in ``{0, 1}``; drawn in that order, ``randint(0, 2p + 1, (2, count))`` then
    ``randint(0, 2, (count,))``.
    """
    if padding < 0:
        raise ConfigError(f"crop padding={padding} must be non-negative")
    offsets = torch.randint(0, 2 * padding + 1, (2, count), generator=generator, device=generator.device)
    flips = torch.randint(0, 2, (1, count), generator=generator, device=generator.device)
    return torch.cat([offsets, flips])


def random_crop_flip(x: Tensor, draws: Tensor, padding: int = 4) -> Tensor:
    """``H x W`` crops of the zero-padded batch, mirrored left-right where drawn (:func:`crop_draws`).

    With ``P = pad(x, padding)`` (zeros) and ``draws[:, b] = (dy_b, dx_b, f_b)`` on ``x.device``:
    ``out[b, c, i, j] = P[b, c, dy_b + i, dx_b + (W - 1 - j if f_b else j)]``.  Keeps ``x``'s dtype.
    """
    if x.dim() != 4:
        raise ConfigError(f"random_crop_flip needs a batch [B, C, H, W], got shape {tuple(x.shape)}")
    if padding < 0:
        raise ConfigError(f"crop padding={padding} must be non-negative")
    batch, channels, height, width = x.shape
    if draws.shape != (3, batch):
        raise ConfigError(f"crop draws must be [3, {batch}], got {tuple(draws.shape)}")
    flips = draws[2].bool()
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = draws[0, :, None] + torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    cols = draws[1, :, None] + torch.where(flips[:, None], width - 1 - cols, cols)
    rows = rows[:, None, :, None].expand(batch, channels, height, width + 2 * padding)
    picked_rows = padded.gather(2, rows)
    return picked_rows.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))


def to_unit_range(x: Tensor) -> Tensor:
    """uint8 bytes -> float32 ``bytes / 255`` (what ``ToTensor`` gives); float input is returned as is."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255)
    if not x.is_floating_point():
        raise ConfigError(f"images must be uint8 bytes or floats in [0, 1], got {x.dtype}")
    return x


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Per channel ``c``: ``(u - mean[c]) / std[c]`` with ``u = to_unit_range(x)``; float32 ``[B, C, H, W]``."""
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ConfigError(f"normalisation has {len(mean)} means and {len(std)} stds "
                          f"for images with {x.shape[1]} channels")
    shift, scale = _channel_constants(tuple(mean), tuple(std), x.device)
    unit = to_unit_range(x)
    out = unit - shift if unit is x else unit.sub_(shift)
    return out.div_(scale)


@lru_cache(maxsize=16)
def _channel_constants(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
                       ) -> tuple[Tensor, Tensor]:
    """``mean`` and ``std`` as ``[1, C, 1, 1]`` float32 tensors on ``device``, made once per device."""
    shape = (1, len(mean), 1, 1)
    return (torch.tensor(mean, dtype=torch.float32, device=device).reshape(shape),
            torch.tensor(std, dtype=torch.float32, device=device).reshape(shape))


def channel_moments(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of ``u = bytes / 255`` over every image and pixel.

    Exact for uint8 ``x``: integer sums ``S1 = sum k``, ``S2 = sum k^2`` over the ``M`` pixels of a
    channel, then ``mean = S1 / (255 M)`` and ``std = sqrt(S2 / (255^2 M) - mean^2)`` (population sd).
    """
    if x.dtype != torch.uint8 or x.dim() != 4 or len(x) == 0:
        raise ConfigError(f"channel_moments needs non-empty uint8 images [n, C, H, W], got {x.dtype} {tuple(x.shape)}")
    first = x.new_zeros(x.shape[1], dtype=torch.int64)
    second = x.new_zeros(x.shape[1], dtype=torch.int64)
    for start in range(0, len(x), _STATS_CHUNK):
        chunk = x[start:start + _STATS_CHUNK].to(torch.int64)
        first += chunk.sum(dim=(0, 2, 3))
        second += chunk.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = first.double() / (255 * count)
    var = (second.double() / (255**2 * count) - mean.square()).clamp_min(0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in var.sqrt())


@dataclass(frozen=True)
class BatchTransform:
    """A stored batch -> network input: crop + flip (training batches, if ``augment``), then ``normalize``.

    ``mean``/``std`` are per channel, for pixels in ``[0, 1]``; ``padding`` is the crop's zero padding.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = True
    padding: int = 4

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ConfigError(f"normalisation needs one mean and one std per channel, "
                              f"got {len(self.mean)} and {len(self.std)}")
        if not all(s > 0 for s in self.std):
            raise ConfigError(f"normalisation stds must be positive, got {self.std}")
        if self.padding < 0:
            raise ConfigError(f"crop padding={self.padding} must be non-negative")

    def draws(self, count: int, generator: torch.Generator) -> Tensor | None:
        """Augmentation draws for ``count`` training images (:func:`crop_draws`), or None without augmentation."""
        return crop_draws(count, generator, self.padding) if self.augment else None

    def __call__(self, x: Tensor, draws: Tensor | None = None) -> Tensor:
        """``normalize(random_crop_flip(x, draws))`` for a training batch with its draws, else ``normalize(x)``."""
        if draws is not None:
            x = random_crop_flip(x, draws, self.padding)
        return normalize(x, self.mean, self.std)
