"""The exported network as an ONNX file, and its predictions through onnxruntime (optional extras)."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..atomic import atomic_path
from ..errors import ConfigError


def onnx_available() -> bool:
    """Whether ``onnxruntime`` (needed to check the file) is installed."""
    return importlib.util.find_spec("onnxruntime") is not None


def save_onnx(net: nn.Module, input_shape: tuple[int, ...], path: str | Path) -> Path:
    """Write ``net`` as ONNX (batch size dynamic; input ``"input"``, output ``"logits"``), atomically."""
    example = torch.zeros(1, *input_shape)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(net, (example,), str(tmp), dynamo=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return Path(path)


def onnx_logits(path: str | Path, x: Tensor, batch_size: int = 2000) -> Tensor:
    """Outputs of the ONNX file at ``path`` on ``x``, computed by onnxruntime on the CPU."""
    if not onnx_available():
        raise ConfigError("checking the ONNX file needs onnxruntime: pip install 'bayes_halo[onnx]'")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pieces = [torch.from_numpy(session.run(None, {"input": x[i:i + batch_size].cpu().numpy()})[0])
              for i in range(0, len(x), batch_size)]
    return torch.cat(pieces).to(x.device)
