#!/usr/bin/env bash
# Second screening wave (4 epochs, seed 0): stronger xi for the decoupled and proximal(profile) steps, coupled around 5e-5.
#   bash experiments/own_loop/screen2.sh   -> experiments/results/own_loop/screen/*.json
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/results/own_loop/screen
export OMP_WAIT_POLICY=PASSIVE
run() { nice -n 5 python experiments/own_loop/run.py --epochs 4 --seed 0 --threads 1 --out "$out" "$@"; }
for xi in 3e-2 1e-1; do
  run --method decoupled --xi "$xi" &
  run --method proximal --hyper profile --xi "$xi" &
done
run --method coupled --xi 1e-5 --psi 1e-4 &
run --method coupled --xi 2e-4 --psi 1e-4 &
wait
