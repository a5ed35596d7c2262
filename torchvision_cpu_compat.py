"""``import torchvision`` on a CPU-only torch when the only torchvision wheel is a CUDA build.

That wheel's compiled extension cannot load on the CPU torch, and ``import torchvision`` then
dies with ``RuntimeError: operator torchvision::nms does not exist``: torchvision registers meta
kernels for operators whose schemas live in the extension.  Datasets, transforms and model
definitions never call those operators, so defining the two missing schemas (no kernels) lets
torchvision import.  Where the extension loads, nothing is defined and nothing changes.

:func:`install` puts a one-shot import hook on ``sys.meta_path`` (no torch import until
``torchvision`` is imported); ``scripts/install.sh`` calls it from a ``.pth`` file when the
environment it built cannot ``import torchvision``, so user code needs nothing.  bayes_halo's own
imports go through :func:`prepare` as well.  Stand-alone (no bayes_halo import) on purpose.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_MISSING_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # the torch.library.Library holding the schemas, kept alive


def prepare() -> bool:
    """Before torchvision is imported: load its extension, or define the missing schemas. True if defined."""
    global _library
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations or _library is not None:
        return False
    for extension in Path(spec.submodule_search_locations[0]).glob("_C*.so"):
        try:
            torch.ops.load_library(str(extension))
            return False
        except OSError:
            break
    if hasattr(torch.ops.torchvision, "nms"):
        return False
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _MISSING_SCHEMAS:
        _library.define(schema)
    return True


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs :func:`prepare` the first time ``torchvision`` is imported, then leaves the import to Python."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            prepare()
        return None


def install() -> None:
    """Put the one-shot hook on ``sys.meta_path`` (idempotent; nothing happens until ``import torchvision``)."""
    if "torchvision" not in sys.modules and not any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        sys.meta_path.insert(0, _BeforeTorchvision())
