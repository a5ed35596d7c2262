"""``python -m bayes_halo.path``: a warm-started regularisation path and the choice of a strength."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config.fields import setting
from ..config.sections import RunConfig
from ..errors import ConfigError
from ..threads import THREADING_HELP
from ..regpath import CHOICE, CHOSEN, CSV, PLOT, REFIT, PathConfig, path_priors, regularization_path, write_outputs
from .options import (OneLineParser, add_fields, add_run_arguments, check_out_dir, flag_names, given,
                      parse_or_status, run_command, run_config)

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
  chosen/      with --target-keep: the chosen point's network as a run folder (model.pt, config.json,
               metrics.json, as fit writes them): python -m bayes_halo.export OUT/chosen --keep K
  refit/       with --refit: the refitted run, a run folder as fit writes it

examples:
  python -m bayes_halo.path --prior laplace --from 1e-5 --to 3e-4 --points 6 --epochs 5
  python -m bayes_halo.path --prior halo --psi 1e-4 --strengths 1e-5 3e-5 1e-4 --target-keep 0.01 --refit
  python -m bayes_halo.path --prior halo --walk ray --ratio 3 --from 1e-5 --to 1e-4 --points 4
  python -m bayes_halo.path --dataset digits --val-size 300 --prior laplace --epochs 3 --target-keep 0.05
exit status: 0 on success, 2 on bad input, missing data or divergence.

{threading}
"""


#: what a path changes in the run's defaults: a few epochs per point
PATH_BASE = {"epochs": 5}


@dataclass(frozen=True)
class PathOutput:
    """Where a path writes (not part of the run's config)."""

    out: str | None = setting(None, "output folder (default: runs/path-<prior>-<model>-<dataset>-seed<seed>)")
    overwrite: bool = setting(False, "replace a path already in --out")
    progress: bool = setting(True, "no progress bars", flag="--no-progress")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``bayes_halo.path``: the path's settings plus the run's, derived from their declarations."""
    parser = OneLineParser(prog="python -m bayes_halo.path", description=DESCRIPTION,
                           epilog=EPILOG.format(threading=THREADING_HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_fields(parser.add_argument_group("the path"), PathConfig, PathConfig())
    add_run_arguments(parser, RunConfig.from_flat(**PATH_BASE), skip={"xi"},
                      sections=("prior", "data", "model", "train", "prune"))
    add_fields(parser.add_argument_group("output"), PathOutput, PathOutput())
    for action in parser._actions:  # the path's priors are the registered ones with a strength to walk
        if action.dest == "prior":
            action.choices = path_priors()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parse_or_status(parser, argv)
    if isinstance(args, int):  # --help, or a one-line argument error
        return args
    output = PathOutput(**given(args, PathOutput))

    def body() -> int:
        path = PathConfig(**given(args, PathConfig))
        config = run_config(args, RunConfig.from_flat(**PATH_BASE))
        if path.walk == "ray" and "psi" in given(args, type(config.prior)):
            raise ConfigError("`walk` ray sets psi = `ratio` * xi; drop `psi`")
        out = Path(output.out or f"runs/path-{config.prior.prior_name}-{config.model.model}-{config.data.dataset}-"
                   f"seed{config.seed}")
        check_out_dir(out)
        existing = [name for name in (CSV, CHOICE, PLOT, CHOSEN, REFIT) if (out / name).exists()]
        if existing and not output.overwrite:
            raise ConfigError(f"{out} already holds a path ({', '.join(existing)}); pass `overwrite` or another `out`")
        result = regularization_path(config, path.grid(config.prior.prior_name), walk=path.walk, ratio=path.ratio,
                                     target_keep=path.target_keep, refit=path.refit, refit_epochs=path.refit_epochs,
                                     log=print, progress=output.progress, out=out)
        write_outputs(result, out)
        report(result, path, out)
        return 0

    return run_command(parser.prog, body, flag_names(parser))


def report(result, path: PathConfig, out: Path) -> None:
    """The chosen point, a note when it ends the grid, the refit, and where the outputs are."""
    chosen = result.choice.get("chosen")
    if chosen:
        print(f"chosen for {100 * path.target_keep:g}% kept: point {chosen['point']} xi={chosen['xi']:g}"
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
    folders = [name for name in (CHOSEN, REFIT) if (out / name).is_dir()]
    print(f"outputs in {out}/: {CSV} {PLOT} {CHOICE}" + "".join(f" {name}/" for name in folders))
    if folders:
        print(f"export the {'refitted' if REFIT in folders else 'chosen'} network: python -m bayes_halo.export "
              f"{out / folders[-1]} --keep {path.target_keep:g}")
