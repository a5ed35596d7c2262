"""``python -m bayes_halo.export``: a pruned run as a physically smaller network."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BayesHaloError, CheckpointError, ConfigError
from ..threads import THREADING_HELP
from .options import OneLineParser, as_flags, flag_names, parse_or_status

DESCRIPTION = """\
Prune a finished run (RUN_DIR from python -m bayes_halo.fit) to a keep fraction of its weights
exactly as fit does (--keep: same criterion, same global/layer ranking), or, for a run with
--groups, to a number or fraction of its groups (--keep-units: whole units/channels ranked by
norm or by group HALO's learned coefficient, the rest zeroed), then ship the network it computes,
for any architecture (chains, VGG, residual networks):

  * every dead channel/unit is removed with Torch-Pruning's dependency graph: an index whose
    producers (Conv2d/Linear rows and biases, BatchNorm entries, every layer added into the same
    residual sum) all emit exactly 0, or whose consumers all read it with weight 0; an index whose
    producer weights are 0 but whose bias/BatchNorm shift is not is a constant, folded into the
    consumers' biases where that is exact (no padding); repeated to a fixed point; the network's
    inputs and outputs are never touched;
  * the result is a torch.export program (.pt2): it loads with torch alone.

Load the result:
  import torch;  net = torch.export.load("small.pt2").module();  logits = net(images)
"""

EPILOG = """\
prints and writes to export.json (beside --out, or --report): the architecture before and
after (the input width, then the units of each Conv2d/Linear), parameters and multiply-adds per
example before and after, per-layer units, and test accuracy of the masked network and of the
export loaded back from disk, with the number of test examples whose prediction differs (0
expected) and the largest logit difference.

examples:
  python -m bayes_halo.export experiments/default_run/run --keep 0.01 --out small.pt2
  python -m bayes_halo.export runs/my-run --keep 0.02 --criterion halo-coefficient --onnx small.onnx
  python -m bayes_halo.export runs/group-halo-run --keep-units 0.1 --criterion coefficient
A keep fraction that leaves a layer with fewer weights than classes is exported with a one-line
warning on stderr; one that leaves a layer with no weight at all is refused.
exit status: 0 on success, 2 on bad input (RUN_DIR, --keep, --keep-units, --criterion), a missing
optional dependency (--onnx without the onnx extra) or a network export cannot shrink; nothing is
written then.
"""


def _units(text: str) -> int | float:
    """``--keep-units``: an integer count of groups, or a fraction in (0, 1]."""
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a count or a fraction, got {text!r}") from None
        if not 0 < value <= 1:
            raise argparse.ArgumentTypeError(f"a fraction must be in (0, 1], got {text}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive count, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``bayes_halo.export``."""
    parser = OneLineParser(prog="python -m bayes_halo.export", description=DESCRIPTION,
                           epilog=EPILOG + "\n" + THREADING_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run (holds model.pt and config.json)")
    kept = parser.add_mutually_exclusive_group(required=True)
    kept.add_argument("--keep", type=float, help="fraction of the prunable weights kept, in (0, 1]")
    kept.add_argument("--keep-units", type=_units, metavar="N_OR_FRACTION",
                      help="a run with --groups: keep this many groups (an integer) or this fraction of them "
                           "(e.g. 0.1), ranked over all groupings (the run's --prune-by), the rest zeroed")
    parser.add_argument("--criterion",
                        help="pruning criterion, as in the run's metrics.json. With --keep: magnitude (default); "
                             "halo-coefficient for HALO runs; snr, inclusion, posterior-magnitude (and "
                             "map-magnitude = magnitude) for runs fitted with --svi, applied to the MAP network "
                             "(metrics.json's accuracy_map_net). With --keep-units: norm (size-normalised group "
                             "norm, default) or coefficient (the learned xi/lambda_g^2 of group HALO)")
    parser.add_argument("--out", help="export file, a torch.export program (default: RUN_DIR/small.pt2)")
    parser.add_argument("--report", help="JSON report (default: export.json beside --out)")
    parser.add_argument("--onnx", nargs="?", const="", metavar="PATH",
                        help="also write an ONNX file (default path: --out with suffix .onnx); checked "
                             "with onnxruntime when it is installed (pip install 'bayes_halo[onnx]')")
    parser.add_argument("--data-dir", help="where the run's data set lives (default: the run's data_dir)")
    parser.add_argument("--no-eval", dest="evaluate", action="store_false",
                        help="skip the test-set comparison (no data needed)")
    return parser


def format_report(report: dict[str, Any]) -> str:
    """The printed summary of an export."""
    pruned = (f"{100 * report['keep']:g} % kept ({report['criterion']}, {report['by']})" if "criterion" in report
              else f"{report['groups_kept']} of {report['groups_total']} groups kept "
                   f"({report['rank_by']}, {report['by']})")
    lines = [f"{report['model']} at {pruned}: {report['architecture_before']} -> {report['architecture_after']}",
             f"parameters {report['parameters_before']:,} -> {report['parameters_after']:,}; multiply-adds per "
             f"example {report['macs_before']:,} -> {report['macs_after']:,} ({report['macs_ratio']:.2f}x fewer)"]
    lines += [f"note: {note}" for note in report["notes"]]
    if "test" in report:
        t = report["test"]
        lines.append(f"test accuracy: masked {100 * t['masked_accuracy']:.2f} %, export "
                     f"{100 * t['export_accuracy']:.2f} %; predictions differ on {t['predictions_differ']} of "
                     f"{t['examples']:,} (largest logit difference {t['max_abs_logit_difference']:.2g})")
        if "onnx_predictions_differ" in t:
            lines.append(f"onnx (onnxruntime): predictions differ from the masked network's on "
                         f"{t['onnx_predictions_differ']} of {t['examples']:,}")
    lines.append(f"wrote {report['export']} ({report['export_bytes']:,} bytes)"
                 + (f", {report['onnx']}" if "onnx" in report else "") + f" and {report['report']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parse_or_status(parser, argv)
    if isinstance(args, int):  # --help, or a one-line argument error
        return args
    from ..export import export_run  # after parsing: --help stays fast

    onnx = args.onnx
    if onnx == "":
        onnx = str(args.out or f"{args.run_dir}/small.pt2").rsplit(".", 1)[0] + ".onnx"
    try:
        for warning in preflight(args.run_dir, args.keep, args.criterion, onnx is not None, args.evaluate):
            print(warning, file=sys.stderr)
        report = export_run(args.run_dir, args.keep, args.criterion, out=args.out, report=args.report, onnx=onnx,
                            data_dir=args.data_dir, evaluate=args.evaluate, keep_units=args.keep_units)
    except BayesHaloError as err:
        print(f"{parser.prog}: error: {as_flags(err, flag_names(parser))}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0


def preflight(run_dir: str, keep: float | None, criterion: str | None, onnx: bool, evaluate: bool) -> list[str]:
    """Check what an export needs before it writes anything; return its warnings (thin layers).

    ``keep=None`` (``--keep-units``): the extras and the run folder only; the group export checks the rest.

    Raises BayesHaloError for a missing optional dependency, a run folder without a model, or a
    criterion the run cannot compute.
    """
    from ..extras import require
    from ..pipeline import load_run, run_criteria
    from ..pruning import keep_masks
    from ..pruning.report import sparsity_table, thin_layer_warnings

    if onnx:
        require("onnx")
        if evaluate:
            require("onnxruntime")
    if keep is not None and not (0 < keep <= 1):
        raise ConfigError(f"`keep` must be in (0, 1], got {keep!r}")
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"RUN_DIR {run_dir} is not a folder holding a run (model.pt from bayes_halo.fit)")
    if keep is None:
        return []
    criterion = criterion or "magnitude"
    run = load_run(run_dir)
    criteria = run_criteria(run)
    if criterion not in criteria:
        raise ConfigError(f"unknown `criterion` {criterion!r} for this run: choose one of {', '.join(criteria)}"
                          + ("" if "snr" in criteria else " (posterior criteria need a run fitted with --svi)"))
    table = sparsity_table(keep_masks(criteria[criterion], keep, by=run.config.prune.prune_by))
    empty = [row["layer"] for row in table if row["kept"] == 0]
    if empty:
        raise ConfigError(f"keeping {100 * keep:g}% by {criterion} leaves no weight in {', '.join(empty)}: the "
                          "network's output no longer depends on its input; raise `keep`")
    rows = [{"keep": keep, "criterion": criterion, **row} for row in table]
    return thin_layer_warnings(rows, run.n_classes) if run.n_classes else []
