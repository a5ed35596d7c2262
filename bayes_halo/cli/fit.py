"""``python -m bayes_halo.fit``: train a network with a sparsity prior, prune it, report."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config.fields import setting
from ..config.priors import default_strengths
from ..config.sections import RunConfig
from ..diagnostics.posterior_report import format_posterior
from ..distributed import distributed_runtime
from ..pipeline import run_fit
from ..priors import PRIORS, trainable_priors
from ..pruning.report import thin_layer_warnings
from ..threads import THREADING_HELP
from .options import (OneLineParser, add_fields, add_run_arguments, check_out_dir, flag_names, given,
                      parse_or_status, run_command, run_config)
from .table import format_metrics

DESCRIPTION = """\
Train a network with a sparsity prior (MAP, fast torch path), prune it one-shot to each keep
fraction without fine-tuning, and report dense and pruned accuracy.

With no options this trains LeNet-300-100 on the real MNIST with HALO for 30 epochs
(under a minute on 2 idle CPU cores) and prunes to 10, 5, 2 and 1 % of its weights.

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
  python -m bayes_halo.fit --config runs/my-run/config.json --seed 1  # a saved run's settings, another seed
  torchrun --standalone --nproc_per_node 4 -m bayes_halo.fit --device cuda --out runs/ddp
                                  # 4 GPUs; --batch-size stays the global batch, rank 0 writes
exit status: 0 on success, 2 on bad input, missing data, corrupt checkpoints or divergence.

{threading}
"""


@dataclass(frozen=True)
class OutputOptions:
    """Where a run writes and how it treats a folder that already holds one (not part of the run's config)."""

    out: str | None = setting(None, "output folder (default: runs/<prior>-<model>-<dataset>-seed<seed>)")
    resume: bool = setting(False, "continue the interrupted run in --out from its last finished epoch")
    overwrite: bool = setting(False, "replace a run already in --out")
    progress: bool = setting(True, "no progress bars", flag="--no-progress")


def strength_defaults() -> str:
    """The epilog's table of each trainable prior's default strengths."""
    lines = []
    for name in trainable_priors():
        shown = ", ".join(f"{k}={v:g}" for k, v in default_strengths(name).items())
        lines.append(f"  {name:<17} {shown or '(no penalty)'}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``bayes_halo.fit``, derived from the run's config declarations."""
    parser = OneLineParser(prog="python -m bayes_halo.fit", description=DESCRIPTION,
                           epilog=EPILOG.format(defaults=strength_defaults(), threading=THREADING_HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, RunConfig())
    add_fields(parser.add_argument_group("output"), OutputOptions, OutputOptions())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parse_or_status(parser, argv)
    if isinstance(args, int):  # --help, or a one-line argument error
        return args
    output = OutputOptions(**given(args, OutputOptions))
    flags = flag_names(parser)
    state: dict[str, str] = {}

    def body() -> int:
        config = run_config(args, RunConfig())
        out = Path(output.out or f"runs/{config.prior.prior_name}-{config.model.model}-{config.data.dataset}"
                   f"-seed{config.seed}")
        check_out_dir(out)
        state["out"] = str(out)
        with distributed_runtime(config.train.device) as runtime:
            result = run_fit(config, out, resume=output.resume, overwrite=output.overwrite,
                             progress=output.progress, runtime=runtime)
        if not runtime.master_process:
            return 0
        print(format_metrics(result.metrics))
        for warning in thin_layer_warnings(result.metrics["sparsity"], result.metrics["n_classes"]):
            print(warning, file=sys.stderr)
        if "posterior" in result.metrics:
            print(format_posterior(result.metrics["posterior"]))
        print(f"outputs in {out}/")
        criterion = " --criterion snr" if "posterior" in result.metrics else ""
        print(f"export a pruned network: python -m bayes_halo.export {out} --keep {min(config.prune.keep):g}"
              + criterion)
        return 0

    try:
        return run_command(parser.prog, body, flags)
    except KeyboardInterrupt:
        out = state.get("out", "the output folder")
        print(f"{parser.prog}: interrupted; every finished epoch is saved in {out}: "
              f"continue with --out {out} --resume", file=sys.stderr)
        return 130
