#!/usr/bin/env bash
# The goal's comparison at 30 epochs: seeds 1 and 2 of the points chosen on seed 0's VALIDATION accuracy in
# screen30.sh/screen30b.sh, per keep fraction (seed 0 is the screen's run of the same point):
#   SGD path:   5 % kept xi 1e-5, 2 % kept xi 3e-5 (psi 1e-4);   AdamW, coupled: 5 % kept xi 3e-7, 2 % kept xi 1e-6.
#   bash experiments/own_loop/final30.sh   -> experiments/results/own_loop/screen30/*.json (seeds 1, 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/results/own_loop/screen30
export OMP_WAIT_POLICY=PASSIVE
jobs=${JOBS:-2}
run() { python experiments/own_loop/run.py --epochs 30 --threads 1 --out "$out" "$@"; }
{
  for seed in 1 2; do
    for point in "sgd --xi 1e-5" "sgd --xi 3e-5" "coupled --xi 3e-7" "coupled --xi 1e-6"; do
      echo "--seed $seed --psi 1e-4 --method $point"
    done
  done
} | xargs -P "$jobs" -I{} bash -c "$(declare -f run); out=$out; run {}"
