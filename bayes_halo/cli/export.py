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
Prune a finished run (RUN_DIR from python -m bayes_halo.fit) to a keep fraction exactly as fit
does (same criterion, same global/layer ranking), then ship the network it computes:

  * every dead hidden unit (Linear output, Conv2d output channel) is removed: units with no kept
    outgoing weight, and constant units (no kept incoming weight except from constant units),
    whose constant output is folded into the next layer's bias, so the function is unchanged;
    the inputs the network never reads are dropped by a gather in front of the first layer;
  * each remaining tensor is stored dense, CSR or bitmask + values, whichever is smallest; the
    prior's lambdas and the optimiser state are dropped;
  * BatchNorm right after a Linear/Conv2d is folded into it; any other BatchNorm is kept.

Supported networks: a single chain of Linear, Conv2d, ReLU-type activations, pooling,
BatchNorm, flatten(1), Dropout (the LeNets).  Branching networks (residual connections) stop
with an error.

Load the result with one call (bayes_halo/export/loader.py imports only torch):
  from bayes_halo.export import load_export;  net = load_export("small.pt")
"""

EPILOG = """\
prints and writes to export.json (beside --out, or --report): the architecture before and
after (units per layer, inputs first), weights and non-zeros before and after, bytes of the
dense weights (torch.save of the state_dict) and of the export, and test accuracy of the masked
network and of the export loaded back from disk, with the number of test examples whose
prediction differs (0 expected).

examples:
  python -m bayes_halo.export experiments/default_run/run --keep 0.01 --out small.pt
  python -m bayes_halo.export runs/my-run --keep 0.02 --criterion halo-coefficient --onnx small.onnx
A keep fraction that leaves a layer with fewer weights than classes is exported with a one-line
warning on stderr; one that leaves a layer with no weight at all is refused.
exit status: 0 on success, 2 on bad input (RUN_DIR, --keep, --criterion), a missing optional
dependency (--onnx without the onnx extra) or a network export cannot shrink; nothing is written
then.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``bayes_halo.export``."""
    parser = OneLineParser(prog="python -m bayes_halo.export", description=DESCRIPTION,
                           epilog=EPILOG + "\n" + THREADING_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run (holds model.pt and config.json)")
    parser.add_argument("--keep", type=float, required=True, help="fraction of the prunable weights kept, in (0, 1]")
    parser.add_argument("--criterion", default="magnitude",
                        help="pruning criterion, as in the run's metrics.json: magnitude (default); "
                             "halo-coefficient for HALO runs; snr, inclusion, posterior-magnitude (and "
                             "map-magnitude = magnitude) for runs fitted with --svi, applied to the MAP network "
                             "(metrics.json's accuracy_map_net)")
    parser.add_argument("--out", help="export file (default: RUN_DIR/small.pt)")
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
    lines = [f"{report['model']} at {100 * report['keep']:g} % kept ({report['criterion']}, {report['by']}): "
             f"{report['architecture_before']} -> {report['architecture_after']}",
             f"weights {report['weights_before']:,} ({report['nonzero_before']:,} non-zero) -> "
             f"{report['weights_after']:,} ({report['nonzero_after']:,} non-zero)",
             f"bytes: dense weights {report['dense_weights_bytes']:,} (model.pt {report['model_pt_bytes']:,}) -> "
             f"export {report['export_bytes']:,} ({100 * report['export_fraction_of_dense']:.2f} % of dense)"]
    lines += [f"note: {note}" for note in report["notes"]]
    if "test" in report:
        t = report["test"]
        lines.append(f"test accuracy: masked {100 * t['masked_accuracy']:.2f} %, export "
                     f"{100 * t['export_accuracy']:.2f} %; predictions differ on {t['predictions_differ']} of "
                     f"{t['examples']:,} (largest logit difference {t['max_abs_logit_difference']:.2g})")
        if "onnx_predictions_differ" in t:
            lines.append(f"onnx (onnxruntime): predictions differ from the masked network's on "
                         f"{t['onnx_predictions_differ']} of {t['examples']:,}")
    lines.append(f"wrote {report['export']}" + (f", {report['onnx']}" if "onnx" in report else "")
                 + f" and {report['report']}")
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
        onnx = str(args.out or f"{args.run_dir}/small.pt").rsplit(".", 1)[0] + ".onnx"
    try:
        for warning in preflight(args.run_dir, args.keep, args.criterion, onnx is not None, args.evaluate):
            print(warning, file=sys.stderr)
        report = export_run(args.run_dir, args.keep, args.criterion, out=args.out, report=args.report, onnx=onnx,
                            data_dir=args.data_dir, evaluate=args.evaluate)
    except BayesHaloError as err:
        print(f"{parser.prog}: error: {as_flags(err, flag_names(parser))}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0


def preflight(run_dir: str, keep: float, criterion: str, onnx: bool, evaluate: bool) -> list[str]:
    """Check what an export needs before it writes anything; return its warnings (thin layers).

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
    if not (0 < keep <= 1):
        raise ConfigError(f"`keep` must be in (0, 1], got {keep!r}")
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"RUN_DIR {run_dir} is not a folder holding a run (model.pt from bayes_halo.fit)")
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
