"""Export a finished run: prune it as ``fit`` does, shrink it, save it, and check it on the test set."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import __version__
from ..atomic import write_json
from ..errors import CheckpointError, ConfigError
from ..pipeline import MODEL, FitResult, load_data, load_run, run_criteria
from ..pruning import keep_masks, pruned_copy
from ..pruning.structured import group_criteria, group_masks, keep_groups
from .cost import architecture
from .loader import load_export
from .network import export_network
from .onnx import onnx_available, onnx_logits, save_onnx


def export_run(run_dir: str | Path, keep: float | None = None, criterion: str | None = None,
               out: str | Path | None = None, report: str | Path | None = None, onnx: str | Path | None = None,
               data_dir: str | Path | None = None, evaluate: bool = True,
               keep_units: int | float | None = None) -> dict[str, Any]:
    """Prune the run in ``run_dir`` as ``fit`` does, export it, report.

    Exactly one of ``keep`` (fraction of the prunable weights, ranked by ``criterion``, default
    ``magnitude``) and ``keep_units`` (a run with groups: that many groups, or that fraction of
    them, ranked by ``criterion``: ``norm`` (default) or ``coefficient``; see
    :mod:`bayes_halo.pruning.structured`).  Writes ``out`` (default ``RUN_DIR/small.pt2``, a
    ``torch.export`` program), ``report`` (default ``export.json`` beside ``out``) and, when
    given, the ONNX file ``onnx``.  With ``evaluate`` the export is loaded back from disk and its
    test predictions are compared with the masked network's, example by example.  Returns the
    report (what ``export.json`` holds).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"RUN_DIR {run_dir} is not a folder holding a run (model.pt from bayes_halo.fit)")
    if (keep is None) == (keep_units is None):
        raise ConfigError("give exactly one of `keep` (fraction of weights) and `keep_units` (groups)")
    if keep is not None and not (isinstance(keep, (int, float)) and math.isfinite(keep) and 0 < keep <= 1):
        raise ConfigError(f"`keep` must be in (0, 1], got {keep!r}")
    run = load_run(run_dir)
    by = run.config.prune.prune_by
    if keep_units is not None:
        criteria = group_criteria(run.module)
        criterion = criterion or "norm"
        if criterion not in criteria:
            raise ConfigError(f"unknown `criterion` {criterion!r} for this run: choose one of {', '.join(criteria)}")
        kept = keep_groups(criteria[criterion], keep_units, by=by)
        masks = group_masks(list(run.module.groupings.values()), kept, dict(run.module.net.named_parameters()))
        meta = {"units_kept": keep_units, "rank_by": criterion, "by": by,
                "groups_kept": sum(int(k.sum()) for k in kept.values()),
                "groups_total": sum(int(k.numel()) for k in kept.values())}
        return _export_masked(run, masks, meta, out, report, onnx, data_dir, evaluate)
    criteria = run_criteria(run)
    criterion = criterion or "magnitude"
    if criterion not in criteria:
        raise ConfigError(f"unknown `criterion` {criterion!r} for this run: choose one of {', '.join(criteria)}")
    masks = keep_masks(criteria[criterion], keep, by=by)
    return _export_masked(run, masks, {"keep": keep, "criterion": criterion, "by": by}, out, report, onnx, data_dir,
                          evaluate)


def _export_masked(run: FitResult, masks: dict[str, Tensor], meta: dict[str, Any], out: str | Path | None,
                   report: str | Path | None, onnx: str | Path | None, data_dir: str | Path | None,
                   evaluate: bool) -> dict[str, Any]:
    """Export ``run``'s network with ``masks`` applied; write the file, the report, and compare on the test set."""
    out = Path(out) if out is not None else run.out_dir / "small.pt2"
    report_path = Path(report) if report is not None else out.parent / "export.json"
    masked = pruned_copy(run.module.net.eval(), masks).eval()
    input_shape = tuple(run.input_shape)
    exported = export_network(masked, input_shape)
    exported.save(out)
    before, after = exported.before, exported.after
    result = {"run": str(run.out_dir), "model": run.config.model.model, "input_shape": list(input_shape), **meta,
              "version": __version__, "architecture_before": architecture(before["layers"]),
              "architecture_after": architecture(after["layers"]),
              "parameters_before": before["parameters"], "parameters_after": after["parameters"],
              "nonzero_before": sum(int(torch.count_nonzero(m)) for m in masks.values()),
              "macs_before": before["macs"], "macs_after": after["macs"],
              "macs_ratio": before["macs"] / after["macs"],
              "units_removed": exported.removal.removed, "constants_folded": exported.removal.folded,
              "layers": [{"layer": b["layer"], "type": b["type"], "units_before": b["units"], "units_after": a["units"],
                          "shape_before": b["shape"], "shape_after": a["shape"], "macs_before": b["macs"],
                          "macs_after": a["macs"]} for b, a in zip(before["layers"], after["layers"])],
              "notes": exported.removal.notes, "export": str(out), "export_bytes": out.stat().st_size,
              "model_pt_bytes": (run.out_dir / MODEL).stat().st_size}
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
        if "criterion" in meta:
            result["test"]["metrics_json_accuracy"] = _recorded_accuracy(run.metrics, meta["keep"], meta["criterion"])
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
    """``net(x)`` (in inference mode already), in batches."""
    return torch.cat([net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _recorded_accuracy(metrics: dict[str, Any], keep: float, criterion: str) -> float | None:
    """The test accuracy ``metrics.json`` recorded for this (keep, criterion), if it has the row."""
    for row in metrics.get("pruned", []):
        if (row.get("criterion") == criterion and math.isclose(row.get("keep", -1), keep)
                and not row.get("finetune_epochs")):
            return row.get("test_accuracy")
    return None

