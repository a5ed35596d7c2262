"""Import torchvision on a CPU-only torch even when its compiled extension cannot load.

The only torchvision wheels for recent releases are CUDA builds.  On a CPU torch their
extension fails to load and ``import torchvision`` dies with
``RuntimeError: operator torchvision::nms does not exist``, because torchvision registers
meta kernels for operators whose schemas live in that extension.  Datasets, transforms and
model definitions never call those operators, so we define the two missing schemas (with no
kernels) and import again.  Where the extension loads, nothing here runs.
"""
from __future__ import annotations

import sys
from types import ModuleType

import torch

_MISSING_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
)
_fallback_library: torch.library.Library | None = None


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, defining missing operator schemas if needed."""
    global _fallback_library
    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        if _fallback_library is None:
            _fallback_library = torch.library.Library("torchvision", "DEF")
            for schema in _MISSING_SCHEMAS:
                _fallback_library.define(schema)
        import torchvision
    return torchvision
