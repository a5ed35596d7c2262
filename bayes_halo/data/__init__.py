"""Data sets as in-memory tensors: ``load_dataset(name)`` -> :class:`ArrayData` (MNIST, digits, CIFAR-10/100)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import ConfigError
from .arrays import ArrayData, TensorSplit, iterate_minibatches, train_val_split
from .augment import BatchTransform, channel_moments
from .cifar import load_cifar_tensors
from .digits import load_digits_tensors
from .mnist import load_mnist_tensors

#: data sets the training command accepts (``--dataset`` choices)
DATASETS = ("mnist", "digits")
#: stored as uint8: batches must pass through ``ArrayData.prepare_batch`` before the network
#: (not yet in DATASETS: the training loop does not call ``prepare_batch`` yet)
CIFAR_DATASETS = ("cifar10", "cifar100")

__all__ = ["CIFAR_DATASETS", "DATASETS", "ArrayData", "BatchTransform", "TensorSplit", "iterate_minibatches",
           "load_cifar_tensors", "load_dataset", "load_digits_tensors", "load_mnist_tensors", "train_val_split"]


def load_dataset(name: str, data_dir: str | Path | None = None, val_size: int = 5000, seed: int = 0,
                 download: bool = True, subset: int | None = None, augment: bool = True) -> ArrayData:
    """Load ``name`` and carve a seeded validation set of ``val_size`` from its training set.

    ``subset`` keeps only the first ``subset`` training examples, before the validation split
    (for quick runs). ``seed`` picks the validation split; the test set never changes.
    CIFAR stays uint8 with a :class:`BatchTransform`: per-channel normalisation by the mean and
    sd of the training split's pixels (validation excluded) and, if ``augment``, random crop
    (4-pixel zero padding) and horizontal flip of training batches. ``augment`` has no effect on
    MNIST and digits, which are fed as pixels in [0, 1].
    """
    loaders: dict[str, Callable[[], TensorSplit]] = {
        "mnist": lambda: load_mnist_tensors(data_dir, download=download),
        "digits": load_digits_tensors,
        "cifar10": lambda: load_cifar_tensors("cifar10", data_dir, download=download),
        "cifar100": lambda: load_cifar_tensors("cifar100", data_dir, download=download),
    }
    if name not in loaders:
        raise ConfigError(f"unknown dataset {name!r}: choose one of {', '.join(loaders)}")
    split = loaders[name]()
    x_train, y_train = split.x_train, split.y_train
    if subset is not None:
        if not 0 < subset <= len(y_train):
            raise ConfigError(f"subset={subset} must be in 1..{len(y_train)} "
                              f"(the {name} training set size); lower --subset")
        x_train, y_train = x_train[:subset], y_train[:subset]
    if val_size >= len(y_train):
        raise ConfigError(f"val_size={val_size} leaves no {name} training data: only {len(y_train)} "
                          f"training examples; pass --val-size below {len(y_train)}")
    x_tr, y_tr, x_val, y_val = train_val_split(x_train, y_train, val_size, seed)
    transform = None
    if x_tr.dtype == torch.uint8:
        transform = BatchTransform(*channel_moments(x_tr), augment=augment)
    return ArrayData(name, x_tr, y_tr, x_val, y_val, split.x_test, split.y_test, split.source,
                     split.classes, transform)
