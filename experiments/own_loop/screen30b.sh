#!/usr/bin/env bash
# Second 30-epoch screen (seed 0): the coupled AdamW step kept improving as xi fell (3e-5 -> 1e-5 -> 3e-6), so lower.
#   bash experiments/own_loop/screen30b.sh   -> experiments/results/own_loop/screen30/*.json
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/results/own_loop/screen30
export OMP_WAIT_POLICY=PASSIVE
jobs=${JOBS:-2}
run() { python experiments/own_loop/run.py --epochs 30 --seed 0 --threads 1 --out "$out" "$@"; }
{
  for xi in 1e-6 3e-7; do echo "--method coupled --xi $xi --psi 1e-4"; done
} | xargs -P "$jobs" -I{} bash -c "$(declare -f run); out=$out; run {}"
