#!/usr/bin/env bash
# Screen at the goal's budget (30 epochs, seed 0, validation accuracy decides): the AdamW prior steps
# around the strengths the 4-epoch screens found, and the SGD path at the pruning study's chosen strengths.
#   bash experiments/own_loop/screen30.sh   -> experiments/results/own_loop/screen30/*.json
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/results/own_loop/screen30
export OMP_WAIT_POLICY=PASSIVE
jobs=${JOBS:-2}
run() { python experiments/own_loop/run.py --epochs 30 --seed 0 --threads 1 --out "$out" "$@"; }
{
  for xi in 3e-6 1e-5 3e-5; do echo "--method coupled --xi $xi --psi 1e-4"; done
  for xi in 1e-2 3e-2; do echo "--method decoupled --xi $xi"; echo "--method proximal --hyper profile --xi $xi"; done
  for xi in 1e-5 3e-5; do echo "--method sgd --xi $xi --psi 1e-4"; done
} | xargs -P "$jobs" -I{} bash -c "$(declare -f run); out=$out; run {}"
