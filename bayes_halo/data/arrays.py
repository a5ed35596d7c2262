"""Data sets held as tensors in memory, split and batched by indexing (no per-image DataLoader).

Images are ``[n, C, H, W]``: float32 pixels in ``[0, 1]`` (MNIST, digits: fed to the network as
they are), or uint8 bytes with a :class:`~bayes_halo.data.augment.BatchTransform` (CIFAR: 4x less
memory) that turns each batch into network input on its device. Labels are int64 ``[n]``.
Text (task ``next-character``) is int64 character indices ``x, y [n, T]`` (``y`` is ``x`` shifted by one).
"""
from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import torch

from ..errors import ConfigError
from ..tasks import Task, task
from .augment import BatchTransform


class TensorSplit(NamedTuple):
    """A train/test pair as a loader returns it, with where the data came from.

    A data set with a fixed validation split gives ``x_val``/``y_val`` (then none is carved from the
    training set); ``task`` names its :class:`~bayes_halo.tasks.Task`; ``details`` (JSON-able) go
    into ``metrics.json`` (e.g. a text's origin and hash).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    classes: tuple[str, ...] | None = None
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    task: str = "classification"
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ArrayData:
    """Train/validation/test tensors of one data set; ``source`` says where they were read from.

    ``classes`` names the labels ``0 .. K - 1`` when the data set has names. ``transform`` (needed
    for uint8 images) maps a stored batch to network input: use :meth:`prepare_batch` on every batch.
    ``task`` names the kind of labels, their likelihood and metric (:mod:`bayes_halo.tasks`);
    ``details`` are recorded in ``metrics.json``.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str = "in memory"
    classes: tuple[str, ...] | None = None
    transform: BatchTransform | None = None
    task: str = "classification"
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.spec.name == "next-character":
            self._check_sequences()
            return
        dtypes = (torch.float32, torch.uint8) if self.transform is not None else (torch.float32,)
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dim() != 4 or x.dtype not in dtypes:
                kinds = "float32 or uint8" if self.transform is not None else "float32 (uint8 needs a transform)"
                raise ConfigError(f"{self.name}: x_{split} must be {kinds} [n, C, H, W], "
                                  f"got {x.dtype} {tuple(x.shape)}")
            if y.dim() != 1 or y.dtype != torch.int64 or len(y) != len(x):
                raise ConfigError(f"{self.name}: y_{split} must be int64 [{len(x)}], "
                                  f"got {y.dtype} {tuple(y.shape)}")
            if x.shape[1:] != self.x_train.shape[1:]:
                raise ConfigError(f"{self.name}: x_{split} images are {tuple(x.shape[1:])}, "
                                  f"x_train images are {tuple(self.x_train.shape[1:])}")
            if self.classes is not None and len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(self.classes):
                raise ConfigError(f"{self.name}: y_{split} has labels outside 0..{len(self.classes) - 1} "
                                  f"({len(self.classes)} class names)")

    def _check_sequences(self) -> None:
        """Character indices: ``x`` and ``y`` int64 ``[n, T]`` of one ``T``, values in ``0 .. V - 1``."""
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dim() != 2 or x.dtype != torch.int64 or y.shape != x.shape or y.dtype != torch.int64:
                raise ConfigError(f"{self.name}: x_{split} and y_{split} must be int64 [n, T] of one shape, "
                                  f"got {x.dtype} {tuple(x.shape)} and {y.dtype} {tuple(y.shape)}")
            if x.shape[1] != self.x_train.shape[1]:
                raise ConfigError(f"{self.name}: {split} sequences have length {x.shape[1]}, "
                                  f"training sequences {self.x_train.shape[1]}")

    @property
    def spec(self) -> Task:
        """The :class:`~bayes_halo.tasks.Task` of the labels: their likelihood and metric."""
        return task(self.task)

    def prepare_batch(self, xb: torch.Tensor, draws: torch.Tensor | None = None) -> torch.Tensor:
        """Network input for a stored batch ``xb`` (the batch itself when there is no ``transform``).

        ``draws`` (from :meth:`augmentation_draws`, one column per image of ``xb``, on its device)
        augments a training batch; validation and test batches are only normalised.
        """
        return xb if self.transform is None else self.transform(xb, draws)

    def augmentation_draws(self, count: int, generator: torch.Generator) -> torch.Tensor | None:
        """Random crops and flips for ``count`` training images from ``generator``, or None if not augmenting."""
        return self.transform.draws(count, generator) if self.augments else None

    @property
    def augments(self) -> bool:
        """True when training batches are randomly cropped and flipped (they need a generator)."""
        return self.transform is not None and self.transform.augment

    def to(self, device: torch.device | str) -> "ArrayData":
        """The same data with every tensor on ``device`` (itself if they are there already)."""
        tensors = {f"{k}_{split}": getattr(self, f"{k}_{split}").to(device)
                   for split in ("train", "val", "test") for k in ("x", "y")}
        if all(t is getattr(self, name) for name, t in tensors.items()):
            return self
        return replace(self, **tensors)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one image, ``(T,)`` of one sequence."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        """``len(classes)`` if named, else 1 + the largest label in any split (labels are ``0 .. K - 1``)."""
        if self.classes is not None:
            return len(self.classes)
        labels = [y for y in (self.y_train, self.y_val, self.y_test) if len(y)]
        return 1 + max(int(y.max()) for y in labels)

    @property
    def n_train(self) -> int:
        """Number of training examples (validation excluded): images or sequences."""
        return len(self.y_train)

    @property
    def n_observations(self) -> int:
        """``N`` of the likelihood: training labels (one per image, one per predicted character)."""
        return self.y_train.numel()


def train_val_split(x: torch.Tensor, y: torch.Tensor, val_size: int, seed: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Carve ``val_size`` random examples out of a training set: ``(x_tr, y_tr, x_val, y_val)``.

    The split is a permutation drawn from ``torch.Generator().manual_seed(seed)``, so it is the
    same on every machine for the same ``seed``; ``val_size=0`` gives empty validation tensors.
    """
    n = len(x)
    if len(y) != n:
        raise ConfigError(f"x has {n} examples but y has {len(y)}")
    if not 0 <= val_size < n:
        raise ConfigError(f"val_size={val_size} must be in 0..{n - 1}: the validation set is carved "
                          f"from the {n} training examples; lower `val_size`")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size], order[val_size:]
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def iterate_minibatches(x: torch.Tensor, y: torch.Tensor, batch_size: int,
                        generator: torch.Generator | None, shuffle: bool = True
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(xb, yb)`` batches covering every example once; the last batch may be smaller.

    With ``shuffle`` the order is ``torch.randperm(n, generator=generator)``; without it the
    batches are consecutive slices (views, no copy).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    n = len(x)
    if len(y) != n:
        raise ConfigError(f"x has {n} examples but y has {len(y)}")
    if not shuffle:
        for start in range(0, n, batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
        return
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
