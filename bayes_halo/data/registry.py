"""Data sets by name: the built-in ones plus any a user registers before ``main()``.

    @register_dataset("my-data")
    def my_data(data_dir, download):
        return TensorSplit(x_train, y_train, x_test, y_test, source="my files")

A loader takes ``(data_dir: Path | None, download: bool)`` and returns a
:class:`~bayes_halo.data.arrays.TensorSplit`; the validation split is carved by ``load_dataset``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigError
from .arrays import TensorSplit

DatasetLoader = Callable[[Path | None, bool], TensorSplit]
LoaderT = TypeVar("LoaderT", bound=DatasetLoader)

_DATASETS: dict[str, DatasetLoader] = {}


def register_dataset(name: str, overwrite: bool = False) -> Callable[[LoaderT], LoaderT]:
    """Decorator registering ``loader(data_dir, download) -> TensorSplit`` under ``name``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a data set name must be a non-empty string, got {name!r}")

    def add(loader: LoaderT) -> LoaderT:
        if name in _DATASETS and not overwrite:
            raise ConfigError(f"a data set named {name!r} is already registered: "
                              "pick another name or pass overwrite=True")
        _DATASETS[name] = loader
        return loader

    return add


def dataset_loader(name: str) -> DatasetLoader:
    """The loader registered as ``name``."""
    if name not in _DATASETS:
        raise ConfigError(f"unknown `dataset` {name!r}: choose one of {', '.join(available_datasets())} "
                          "or add yours with bayes_halo.data.register_dataset")
    return _DATASETS[name]


def available_datasets() -> list[str]:
    """Registered data set names, in registration order."""
    return list(_DATASETS)
