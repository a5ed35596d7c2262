"""Optional dependencies: each belongs to an extra of the package, checked before any work starts.

``require("onnx")`` raises :class:`~bayes_halo.errors.MissingDependencyError` (one line naming the
extra to install) when the module cannot be imported, so a command line stops with exit status 2
before it writes a file.
"""
from __future__ import annotations

import importlib

from .errors import MissingDependencyError

#: importable module -> (the extra of ``bayes_halo`` that installs it, what needs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "onnx": ("onnx", "writing an ONNX file"),
    "onnxruntime": ("onnx", "checking an ONNX file"),
    "submitit": ("study", "running a study through submitit"),
    "lightning.pytorch": ("lightning", "the Lightning integration"),
}


def require(module: str) -> None:
    """Import ``module`` (a key of :data:`EXTRAS`) or raise a one-line MissingDependencyError naming its extra."""
    extra, purpose = EXTRAS[module]
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{purpose} needs {module}, which is not installed: "
                                     f"pip install 'bayes_halo[{extra}]'") from None
