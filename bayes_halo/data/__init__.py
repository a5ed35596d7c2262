"""Data sets as in-memory tensors: ``load_dataset(name)`` -> :class:`ArrayData`, by registry name."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .arrays import ArrayData, TensorSplit, iterate_minibatches, train_val_split
from .digits import load_digits_tensors
from .mnist import load_mnist_tensors
from .registry import available_datasets, dataset_loader, register_dataset

register_dataset("mnist")(load_mnist_tensors)
register_dataset("digits")(lambda data_dir, download: load_digits_tensors())

__all__ = ["ArrayData", "TensorSplit", "available_datasets", "iterate_minibatches", "load_dataset",
           "load_digits_tensors", "load_mnist_tensors", "register_dataset", "train_val_split"]


def load_dataset(name: str, data_dir: str | Path | None = None, val_size: int = 5000, seed: int = 0,
                 download: bool = True, subset: int | None = None) -> ArrayData:
    """Load ``name`` and carve a seeded validation set of ``val_size`` from its training set.

    ``subset`` keeps only the first ``subset`` training examples, before the validation split
    (for quick runs). ``seed`` picks the validation split; the test set never changes.
    """
    root = None if data_dir is None else Path(data_dir).expanduser()
    split = dataset_loader(name)(root, download)
    x_train, y_train = split.x_train, split.y_train
    if subset is not None:
        if not 0 < subset <= len(y_train):
            raise ConfigError(f"`subset`={subset} must be in 1..{len(y_train)} "
                              f"(the {name} training set size)")
        x_train, y_train = x_train[:subset], y_train[:subset]
    if val_size >= len(y_train):
        raise ConfigError(f"`val_size`={val_size} leaves no {name} training data: only {len(y_train)} "
                          f"training examples; choose a `val_size` below {len(y_train)}")
    x_tr, y_tr, x_val, y_val = train_val_split(x_train, y_train, val_size, seed)
    return ArrayData(name, x_tr, y_tr, x_val, y_val, split.x_test, split.y_test, split.source)
