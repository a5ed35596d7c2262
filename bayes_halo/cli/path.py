"""``python -m bayes_halo.path``: a warm-started regularisation path and the choice of a strength."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..data import DATASETS
from ..errors import BayesHaloError, ConfigError
from ..models import available_models
from ..path import CHOICE, CSV, PATH_PRIORS, PLOT, regularization_path, strength_grid, write_outputs
from ..training.config import DEFAULT_STRENGTHS, FitConfig

DESCRIPTION = """\
Train along a grid of increasing penalty strengths with warm starts (glmnet-style): point k
starts from point k-1's end-of-training weights AND prior hyper-variables (HALO's lambdas)
and trains --epochs more epochs with the usual schedule (fresh SGD, lr x --lr-gamma at the
--lr-milestones fractions of the point's epochs).  Every point is scored on the VALIDATION
split: dense accuracy, accuracy after one-shot global magnitude pruning at each --keep
fraction, and the fraction of weights with |w| < 1e-3.

Without --target-keep it reports the frontier: for each keep fraction, the best validation
accuracy along the path and the point reaching it.  With --target-keep K it chooses the point
whose magnitude-pruned network at K has the best validation accuracy (the weaker strength on
ties), reports that end-of-training model's TEST accuracy (dense and at K; the only test
numbers computed), and with --refit retrains those strengths from scratch for --refit-epochs
epochs (the full schedule) and reports that model's validation and test accuracy too.

Strengths are PER EXAMPLE, as in the paper: the objective is mean cross-entropy + R(w), e.g.
lasso R = xi * sum |w_j|, HALO R = xi * sum |w_j| / lambda_j^2 + psi * sum lambda_j.
A coefficient c on the summed loss is c / N here (N = training examples).

What moves along the path: xi, always.  For halo and shared-halo, --walk xi (default) keeps
psi fixed at --psi; --walk ray moves both along psi = --ratio * xi.
"""

EPILOG = """\
outputs in --out (each written atomically):
  path.csv     one row per point: point, xi, psi, epochs (this point), cumulative_epochs (pilot
               included), val_dense, val_keep_<K> for each keep, near_zero (fraction |w| < 1e-3),
               train_seconds, test_dense and test_at_target (chosen point and refit row only)
  path.png     validation accuracy and sparsity against xi
  choice.json  the frontier, and with --target-keep the chosen point (and the refit)

examples:
  python -m bayes_halo.path --prior laplace --from 1e-5 --to 3e-4 --points 6 --epochs 5
  python -m bayes_halo.path --prior halo --psi 1e-4 --strengths 1e-5 3e-5 1e-4 --target-keep 0.01 --refit
  python -m bayes_halo.path --prior halo --walk ray --ratio 3 --from 1e-5 --to 1e-4 --points 4
  python -m bayes_halo.path --dataset digits --val-size 300 --prior laplace --epochs 3 --target-keep 0.05
exit status: 0 on success, 2 on bad input, missing data or divergence.
"""


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``bayes_halo.path``."""
    parser = _OneLineParser(prog="python -m bayes_halo.path", description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    d = FitConfig.__dataclass_fields__

    def default(name: str):
        return d[name].default

    path = parser.add_argument_group("the path")
    path.add_argument("--prior", choices=PATH_PRIORS, default="halo", help="(default: %(default)s)")
    path.add_argument("--strengths", type=float, nargs="+", metavar="XI",
                      help="the xi values, strictly increasing (per example)")
    path.add_argument("--from", dest="start", type=float, metavar="XI",
                      help="first xi of a log-spaced grid (default: the prior's default xi / 3)")
    path.add_argument("--to", dest="stop", type=float, metavar="XI",
                      help="last xi of a log-spaced grid (default: the prior's default xi x 10)")
    path.add_argument("--points", type=int, default=6, help="points of the log-spaced grid (default: %(default)s)")
    path.add_argument("--walk", choices=("xi", "ray"), default="xi",
                      help="halo, shared-halo: 'xi' moves xi with psi fixed at --psi; 'ray' moves both, "
                           "psi = --ratio * xi (default: %(default)s)")
    path.add_argument("--ratio", type=float, help="psi / xi on --walk ray")
    path.add_argument("--psi", type=float, help="fixed psi on --walk xi (default: the prior's default psi)")
    path.add_argument("--epochs", type=int, default=5, help="epochs per point (default: %(default)s)")
    path.add_argument("--gamma", type=float, default=default("gamma"),
                      help="adaptive-laplace: omega_j = 1/|w_pilot_j|^gamma (default: %(default)s)")
    path.add_argument("--pilot-epochs", type=int, default=default("pilot_epochs"),
                      help="adaptive-laplace: epochs of the dense pilot fit before the first point "
                           "(default: %(default)s)")

    choice = parser.add_argument_group("choice")
    choice.add_argument("--keep", type=float, nargs="+", default=[0.1, 0.05, 0.02, 0.01], metavar="FRACTION",
                        help="keep fractions scored at every point (default: 0.1 0.05 0.02 0.01)")
    choice.add_argument("--target-keep", type=float, metavar="FRACTION",
                        help="choose the point with the best validation accuracy at this keep fraction")
    choice.add_argument("--refit", action="store_true",
                        help="retrain the chosen strengths from scratch for --refit-epochs epochs")
    choice.add_argument("--refit-epochs", type=int, default=default("epochs"), help="(default: %(default)s)")

    data = parser.add_argument_group("data and network")
    data.add_argument("--dataset", choices=DATASETS, default=default("dataset"), help="(default: %(default)s)")
    data.add_argument("--data-dir", default=default("data_dir"), help="(default: %(default)s)")
    data.add_argument("--no-download", dest="download", action="store_false", help="never try to download")
    data.add_argument("--val-size", type=int, default=default("val_size"),
                      help="validation examples carved from the training set (default: %(default)s)")
    data.add_argument("--subset", type=int, help="use only the first N training examples")
    data.add_argument("--model", choices=available_models(), default=default("model"), help="(default: %(default)s)")

    training = parser.add_argument_group("training of each point (SGD with momentum)")
    training.add_argument("--batch-size", type=int, default=default("batch_size"), help="(default: %(default)s)")
    training.add_argument("--lr", type=float, default=default("lr"), help="(default: %(default)s)")
    training.add_argument("--lambda-lr", type=float, help="hyper-variables' learning rate (default: --lr)")
    training.add_argument("--positivity", choices=("abs", "exp"), default=default("positivity"),
                          help="lambda = |raw| (the paper's) or exp(raw) (default: %(default)s)")
    training.add_argument("--momentum", type=float, default=default("momentum"), help="(default: %(default)s)")
    training.add_argument("--lr-milestones", type=float, nargs="+", default=list(default("lr_milestones")),
                          metavar="FRACTION", help="fractions of each point's epochs (default: 0.5 0.75)")
    training.add_argument("--lr-gamma", type=float, default=default("lr_gamma"), help="(default: %(default)s)")
    training.add_argument("--seed", type=int, default=default("seed"),
                          help="seeds initialisation, batch order and validation split (default: %(default)s)")
    training.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")

    output = parser.add_argument_group("output")
    output.add_argument("--out", help="output folder (default: runs/path-<prior>-<model>-<dataset>-seed<seed>)")
    output.add_argument("--overwrite", action="store_true", help="replace a path already in --out")
    output.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return parser


def strengths_from_args(args: argparse.Namespace) -> list[float]:
    """``--strengths``, or the log-spaced grid of ``--from/--to/--points`` (defaults per prior)."""
    if args.strengths is not None:
        if args.start is not None or args.stop is not None:
            raise ConfigError("give either --strengths or --from/--to, not both")
        return args.strengths
    xi = DEFAULT_STRENGTHS[args.prior]["xi"]
    return strength_grid(xi / 3 if args.start is None else args.start,
                         xi * 10 if args.stop is None else args.stop, args.points)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out or f"runs/path-{args.prior}-{args.model}-{args.dataset}-seed{args.seed}")
    try:
        existing = [name for name in (CSV, CHOICE, PLOT) if (out / name).exists()]
        if existing and not args.overwrite:
            raise ConfigError(f"{out} already holds a path ({', '.join(existing)}); pass --overwrite or another --out")
        if args.walk == "ray" and args.psi is not None:
            raise ConfigError("--walk ray sets psi = --ratio * xi; drop --psi")
        strengths = strengths_from_args(args)
        names = set(FitConfig.__dataclass_fields__) & set(vars(args))
        config = FitConfig(**{name: getattr(args, name) for name in names})
        result = regularization_path(config, strengths, walk=args.walk, ratio=args.ratio,
                                     target_keep=args.target_keep, refit=args.refit, refit_epochs=args.refit_epochs,
                                     log=print, progress=args.progress)
        write_outputs(result, out)
    except BayesHaloError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    chosen = result.choice.get("chosen")
    if chosen:
        print(f"chosen for {100 * args.target_keep:g}% kept: point {chosen['point']} xi={chosen['xi']:g}"
              + (f" psi={chosen['psi']:g}" if chosen["psi"] is not None else "")
              + f"; end-of-training test accuracy dense {100 * chosen['test_dense']:.2f}%, "
              f"pruned {100 * chosen['test_at_target']:.2f}%")
        if chosen["at_edge"]:
            beyond = ("--to / a larger last strength" if chosen["at_edge"] == "strongest"
                      else "--from / a smaller first strength")
            print(f"note: the chosen point is the {chosen['at_edge']} on the path; the best strength may lie beyond "
                  f"it ({beyond})")
    if "refit" in result.choice:
        refit = result.choice["refit"]
        print(f"refit ({refit['epochs']} epochs from scratch): test accuracy dense {100 * refit['test_dense']:.2f}%, "
              f"pruned {100 * refit['test_at_target']:.2f}%")
    print(f"outputs in {out}/: {CSV} {PLOT} {CHOICE}")
    return 0
