#!/usr/bin/env bash
# Screening of the prior step for AdamW (4 epochs, seed 0, validation accuracy after pruning), all runs in parallel.
#   bash experiments/own_loop/screen.sh   -> experiments/results/own_loop/screen/*.json
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/results/own_loop/screen
export OMP_WAIT_POLICY=PASSIVE
run() { nice -n 5 python experiments/own_loop/run.py --epochs 4 --seed 0 --threads 1 --out "$out" "$@"; }
run --method sgd --xi 5e-5 --psi 1e-4 &
run --method coupled --xi 5e-5 --psi 1e-4 &
run --method coupled --xi 1e-3 &
for xi in 1e-3 1e-2; do
  run --method decoupled --xi "$xi" &
  run --method proximal --xi "$xi" &
  run --method proximal --hyper profile --xi "$xi" &
done
wait
