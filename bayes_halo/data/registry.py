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

from ..registry import Registry
from .arrays import TensorSplit

DatasetLoader = Callable[[Path | None, bool], TensorSplit]
LoaderT = TypeVar("LoaderT", bound=DatasetLoader)

#: every data set loader by name, in registration order
DATASETS: Registry[DatasetLoader] = Registry("dataset", "bayes_halo.data.register_dataset")


def register_dataset(name: str, overwrite: bool = False) -> Callable[[LoaderT], LoaderT]:
    """Decorator registering ``loader(data_dir, download) -> TensorSplit`` under ``name``."""
    return DATASETS.register(name, overwrite)


def dataset_loader(name: str) -> DatasetLoader:
    """The loader registered as ``name``."""
    return DATASETS.get(name)


def available_datasets() -> list[str]:
    """Registered data set names, in registration order."""
    return DATASETS.names()
