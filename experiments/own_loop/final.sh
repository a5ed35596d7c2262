#!/usr/bin/env bash
# SGD path vs AdamW path (the adaptive default), 3 seeds, EPOCHS epochs (default 8: what this shared machine allowed;
# the goal's 30 epochs is EPOCHS=30), all runs in parallel.
#   EPOCHS=30 bash experiments/own_loop/final.sh   -> experiments/results/own_loop/final/*.json
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs=${EPOCHS:-8}
out=experiments/results/own_loop/final
export OMP_WAIT_POLICY=PASSIVE
run() { nice -n 5 python experiments/own_loop/run.py --epochs "$epochs" --threads 1 --out "$out" "$@"; }
for seed in 0 1 2; do
  run --seed "$seed" --method sgd --xi 5e-5 --psi 1e-4 &
  run --seed "$seed" --method coupled --xi 5e-5 --psi 1e-4 &
done
wait
