"""CIFAR-10 and CIFAR-100 as uint8 tensors, read from torchvision's on-disk format (the python pickles).

Layout under ``data_dir`` (what ``torchvision.datasets.CIFAR10/100`` download and extract):

* ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (10,000 images each),
  ``test_batch``, ``batches.meta`` (``label_names``);
* ``cifar-100-python/``: ``train`` (50,000), ``test`` (10,000), ``meta`` (``fine_label_names``).

Each batch is a pickled dict with ``data``: uint8 ``[n, 3072]`` (channel-major: 1024 red, 1024
green, 1024 blue pixels, row by row) and the labels (``labels``; CIFAR-100: ``fine_labels``).
The pickles are read here (numpy arrays, lists and strings only; nothing else is unpickled), not
through torchvision, whose classes insist on the official md5 sums. When files are missing and
``download`` is on, torchvision's normal download into ``data_dir`` is tried first.
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataUnavailableError
from .arrays import TensorSplit
from .torchvision_compat import import_torchvision

log = logging.getLogger(__name__)

_SIDE, _CHANNELS = 32, 3
_HOME = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant lives on disk and which keys its pickles use."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    n_classes: int
    archive: str
    torchvision_class: str

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the loader reads, relative to :attr:`folder`."""
        return (*self.train_files, self.test_file, self.meta_file)

    def missing(self, root: Path) -> list[str]:
        """The files of :attr:`files` absent from ``root / folder``."""
        return [name for name in self.files if not (root / self.folder / name).is_file()]


LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout("CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                           "test_batch", "batches.meta", "labels", "label_names", 10,
                           "cifar-10-python.tar.gz", "CIFAR10"),
    "cifar100": CifarLayout("CIFAR-100", "cifar-100-python", ("train",), "test", "meta", "fine_labels",
                            "fine_label_names", 100, "cifar-100-python.tar.gz", "CIFAR100"),
}


def load_cifar_tensors(name: str, data_dir: str | Path | None, download: bool = True) -> TensorSplit:
    """``name`` (``"cifar10"`` or ``"cifar100"``) as uint8 ``x [n, 3, 32, 32]``, int64 labels, class names.

    Raises DataUnavailableError, in one line naming the files and the folder they belong in, when
    the files are absent (and could not be downloaded) or cannot be read.
    """
    layout = LAYOUTS[name]
    if data_dir is None:
        raise DataUnavailableError(f"{layout.title} is read from files: pass --data-dir, the folder that holds "
                                   f"(or should receive) {layout.folder}/")
    root = Path(data_dir).expanduser()
    if layout.missing(root) and download:
        _torchvision_download(layout, root)
    missing = layout.missing(root)
    if missing:
        absent = "" if len(missing) == len(layout.files) else f" (missing: {', '.join(missing)})"
        raise DataUnavailableError(
            f"{layout.title} not found: put {layout.folder}/ with {', '.join(layout.files)} under {root}"
            f"{absent}; it is the extracted {layout.archive} from {_HOME}")
    folder = root / layout.folder
    train = [_read_batch(folder / f, layout) for f in layout.train_files]
    x_test, y_test = _read_batch(folder / layout.test_file, layout)
    classes = _read_names(folder / layout.meta_file, layout)
    log.info("%s loaded from %s", layout.title, folder)
    return TensorSplit(torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), x_test, y_test,
                       f"torchvision folder {folder}", classes)


def _torchvision_download(layout: CifarLayout, root: Path) -> None:
    """Let torchvision download and extract the archive into ``root``; a failure (e.g. offline) is logged."""
    try:
        dataset = getattr(import_torchvision().datasets, layout.torchvision_class)
        dataset(str(root), train=True, download=True)
    except (ImportError, OSError, RuntimeError) as err:
        log.warning("%s download into %s failed (%s)", layout.title, root, " ".join(str(err).split()))


class _PlainDataOnly(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays, dicts, lists and strings, and refuses every other object.

    ``_codecs.encode`` is how a protocol-2 pickle written by Python 3 stores ``bytes``; it only
    encodes a string.
    """

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR pickle")
        return super().find_class(module, name)


def _load_dict(path: Path, layout: CifarLayout) -> dict[str, object]:
    """Unpickle ``path`` (Python 2 or 3 pickle) into a dict with ``str`` keys."""
    try:
        with path.open("rb") as stream:
            content = _PlainDataOnly(stream, encoding="latin1").load()
    except Exception as err:  # a damaged pickle can fail in many ways
        raise DataUnavailableError(f"cannot read {path} ({type(err).__name__}: {err}): "
                                   f"replace it with the file from {layout.archive}") from err
    if not isinstance(content, dict):
        raise DataUnavailableError(f"{path} holds a {type(content).__name__}, not a CIFAR dict: "
                                   f"replace it with the file from {layout.archive}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in content.items()}


def _read_batch(path: Path, layout: CifarLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file -> uint8 images ``[n, 3, 32, 32]`` and int64 labels ``[n]`` in ``0 .. K - 1``."""
    content = _load_dict(path, layout)
    data, labels = content.get("data"), content.get(layout.label_key)
    pixels = _CHANNELS * _SIDE * _SIDE
    bad = f"{path} is not a {layout.title} batch"
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == pixels):
        shape = getattr(data, "shape", None)
        raise DataUnavailableError(f"{bad}: 'data' must be uint8 [n, {pixels}], got {shape}; "
                                   f"replace it with the file from {layout.archive}")
    label_array = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if label_array.shape != (len(data),) or len(data) == 0 or label_array.min() < 0 \
            or label_array.max() >= layout.n_classes:
        raise DataUnavailableError(f"{bad}: '{layout.label_key}' must hold {len(data)} labels in "
                                   f"0..{layout.n_classes - 1}; replace it with the file from {layout.archive}")
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, _CHANNELS, _SIDE, _SIDE).copy())
    return images, torch.from_numpy(label_array)


def _read_names(path: Path, layout: CifarLayout) -> tuple[str, ...]:
    """The class names in label order from the meta file."""
    names = _load_dict(path, layout).get(layout.names_key)
    if not isinstance(names, list) or len(names) != layout.n_classes:
        raise DataUnavailableError(f"{path} must list {layout.n_classes} '{layout.names_key}': "
                                   f"replace it with the file from {layout.archive}")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)
