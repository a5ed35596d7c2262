"""Data sets as in-memory tensors: ``load_dataset(name)`` -> :class:`ArrayData`, by registry name
(MNIST, scikit-learn's digits, CIFAR-10/100, the text that ships with Python, and any a user registers)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from .arrays import ArrayData, TensorSplit, iterate_minibatches, train_val_split
from .augment import BatchTransform, channel_moments
from .cifar import load_cifar_tensors
from .digits import load_digits_tensors
from .mnist import load_mnist_tensors
from .registry import available_datasets, dataset_loader, register_dataset
from .stdlib_text import load_stdlib_text

register_dataset("mnist")(load_mnist_tensors)
register_dataset("digits")(lambda data_dir, download: load_digits_tensors())
register_dataset("cifar10")(lambda data_dir, download: load_cifar_tensors("cifar10", data_dir, download=download))
register_dataset("cifar100")(lambda data_dir, download: load_cifar_tensors("cifar100", data_dir, download=download))
register_dataset("stdlib-text")(load_stdlib_text)

__all__ = ["ArrayData", "BatchTransform", "TensorSplit", "load_cifar_tensors", "available_datasets",
           "iterate_minibatches", "load_dataset",
           "load_digits_tensors", "load_mnist_tensors", "load_stdlib_text", "register_dataset", "train_val_split"]


def load_dataset(name: str, data_dir: str | Path | None = None, val_size: int = 5000, seed: int = 0,
                 download: bool = True, subset: int | None = None, augment: bool = True) -> ArrayData:
    """Load ``name`` and carve a seeded validation set of ``val_size`` from its training set.

    ``subset`` keeps only the first ``subset`` training examples, before the validation split
    (for quick runs). ``seed`` picks the validation split; the test set never changes.  A data set
    with its own fixed validation split (``stdlib-text``) keeps it: ``val_size`` and ``seed`` do not apply.
    Images stored as uint8 (CIFAR) get a :class:`BatchTransform`: per-channel normalisation by the
    mean and sd of the training split's pixels (validation excluded) and, if ``augment``, random
    crop (4-pixel zero padding) and horizontal flip of training batches.  MNIST and digits are
    fed as pixels in [0, 1] and ``augment`` does not apply to them.
    """
    root = None if data_dir is None else Path(data_dir).expanduser()
    split = dataset_loader(name)(root, download)
    x_train, y_train = split.x_train, split.y_train
    if subset is not None:
        if not 0 < subset <= len(y_train):
            raise ConfigError(f"`subset`={subset} must be in 1..{len(y_train)} "
                              f"(the {name} training set size)")
        x_train, y_train = x_train[:subset], y_train[:subset]
    if split.x_val is not None:
        x_tr, y_tr, x_val, y_val = x_train, y_train, split.x_val, split.y_val
    elif val_size >= len(y_train):
        raise ConfigError(f"`val_size`={val_size} leaves no {name} training data: only {len(y_train)} "
                          f"training examples; choose a `val_size` below {len(y_train)}")
    else:
        x_tr, y_tr, x_val, y_val = train_val_split(x_train, y_train, val_size, seed)
    transform = BatchTransform(*channel_moments(x_tr), augment=augment) if x_tr.dtype == torch.uint8 else None
    return ArrayData(name, x_tr, y_tr, x_val, y_val, split.x_test, split.y_test, split.source,
                     split.classes, transform, split.task, dict(split.details or {}))
