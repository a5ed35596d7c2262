"""Export a finished run: prune it as ``fit`` does, shrink it, save it, and check it on the test set."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import __version__
from ..atomic import save_torch, write_json
from ..errors import CheckpointError, ConfigError
from ..pipeline import MODEL, load_data, load_run, run_criteria
from ..pruning import keep_masks, pruned_copy
from .loader import load_export
from .network import ExportedNetwork, export_network
from .onnx import onnx_available, onnx_logits, save_onnx


def export_run(run_dir: str | Path, keep: float, criterion: str = "magnitude", out: str | Path | None = None,
               report: str | Path | None = None, onnx: str | Path | None = None,
               data_dir: str | Path | None = None, evaluate: bool = True) -> dict[str, Any]:
    """Prune the run in ``run_dir`` to ``keep`` by ``criterion`` (as ``fit`` does), export it, report.

    Writes ``out`` (default ``RUN_DIR/small.pt``), ``report`` (default ``export.json`` beside
    ``out``) and, when given, the ONNX file ``onnx``.  With ``evaluate`` the export is loaded back
    from disk and its test predictions are compared with the masked network's, example by example.
    Returns the report (what ``export.json`` holds).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"RUN_DIR {run_dir} is not a folder holding a run (model.pt from bayes_halo.fit)")
    if not (isinstance(keep, (int, float)) and math.isfinite(keep) and 0 < keep <= 1):
        raise ConfigError(f"`keep` must be in (0, 1], got {keep!r}")
    run = load_run(run_dir)
    criteria = run_criteria(run)
    if criterion not in criteria:
        raise ConfigError(f"unknown `criterion` {criterion!r} for this run: choose one of {', '.join(criteria)}")
    out = Path(out) if out is not None else run_dir / "small.pt"
    report_path = Path(report) if report is not None else out.parent / "export.json"
    masks = keep_masks(criteria[criterion], keep, by=run.config.prune.prune_by)
    dense = run.module.net.eval()
    masked = pruned_copy(dense, masks).eval()
    input_shape = run.input_shape
    meta = {"run": str(run_dir), "model": run.config.model.model, "input_shape": list(input_shape), "keep": keep,
            "criterion": criterion, "by": run.config.prune.prune_by, "version": __version__}
    exported = export_network(masked, input_shape, meta)
    save_torch(out, exported.state)
    result = _sizes(dense, exported, run_dir, out)
    result = {**meta, "architecture_before": "-".join(map(str, exported.report.widths_before)),
              "architecture_after": "-".join(map(str, exported.report.widths_after)), **result,
              "layers": exported.report.layers, "layouts": exported.layouts(), "notes": exported.report.notes,
              "export": str(out)}
    if onnx is not None:
        save_onnx(exported.network, input_shape, onnx)
        result["onnx"] = str(onnx)
        result["onnx_bytes"] = Path(onnx).stat().st_size
    if evaluate:
        data = load_data(run.config if data_dir is None else run.config.replace(data_dir=str(data_dir)))
        x_test = data.prepare_batch(data.x_test)  # what the network reads (CIFAR: normalised)
        result["test"] = compare_on(masked, load_export(out), x_test, data.y_test)
        if onnx is not None and onnx_available():
            result["test"]["onnx_predictions_differ"] = int(
                (onnx_logits(onnx, x_test).argmax(1) != _logits(masked, x_test).argmax(1)).sum())
        result["test"]["metrics_json_accuracy"] = _recorded_accuracy(run.metrics, keep, criterion)
    write_json(report_path, result)
    result["report"] = str(report_path)
    return result


def compare_on(reference: nn.Module, candidate: nn.Module, x: Tensor, y: Tensor) -> dict[str, Any]:
    """Accuracies of both networks on ``(x, y)``, examples whose predictions differ, largest output gap."""
    a, b = _logits(reference, x), _logits(candidate, x)
    return {"examples": len(y), "masked_accuracy": float((a.argmax(1) == y).double().mean()),
            "export_accuracy": float((b.argmax(1) == y).double().mean()),
            "predictions_differ": int((a.argmax(1) != b.argmax(1)).sum()),
            "max_abs_logit_difference": float((a - b).abs().max())}


@torch.no_grad()
def _logits(net: nn.Module, x: Tensor, batch_size: int = 2000) -> Tensor:
    """``net(x)`` in eval mode, in batches."""
    net.eval()
    return torch.cat([net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _sizes(dense: nn.Module, exported: ExportedNetwork, run_dir: Path, out: Path) -> dict[str, Any]:
    """Weight counts and bytes: the dense parameters as ``torch.save`` writes them, the export file."""
    buffer = io.BytesIO()
    torch.save(dense.state_dict(), buffer)
    weights = [layer["shape_before"] for layer in exported.report.layers]
    small = [layer["shape_after"] for layer in exported.report.layers]
    dense_bytes, export_bytes = len(buffer.getvalue()), out.stat().st_size
    return {"weights_before": sum(math.prod(s) for s in weights),
            "nonzero_before": sum(layer["nonzero_before"] for layer in exported.report.layers),
            "weights_after": sum(math.prod(s) for s in small),
            "nonzero_after": sum(layer["nonzero_after"] for layer in exported.report.layers),
            "model_pt_bytes": (run_dir / MODEL).stat().st_size, "dense_weights_bytes": dense_bytes,
            "export_bytes": export_bytes, "export_tensor_bytes": exported.tensor_bytes(),
            "export_fraction_of_dense": export_bytes / dense_bytes}


def _recorded_accuracy(metrics: dict[str, Any], keep: float, criterion: str) -> float | None:
    """The test accuracy ``metrics.json`` recorded for this (keep, criterion), if it has the row."""
    for row in metrics.get("pruned", []):
        if row.get("criterion") == criterion and math.isclose(row.get("keep", -1), keep) and not row.get("finetune_epochs"):
            return row.get("test_accuracy")
    return None

