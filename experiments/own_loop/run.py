"""HALO in a plain PyTorch loop with SGD or AdamW: which prior step works with an adaptive optimiser.

LeNet-300-100 on MNIST (55,000 training, 5,000 validation examples carved from the training set,
seeded; the 10,000 test examples), batch 100, learning rates x0.1 at 50 % and 75 % of training.
Every run is the own-loop API, the loop a user writes::

    model = bayes_halo.attach(net, bayes_halo.HALO(xi, psi), n_data)
    model.attach_optimizer(optimizer, method)
    ... loss = F.cross_entropy(model(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()

``--method sgd``: torch.optim.SGD (lr 0.1, momentum 0.9) with the coupled prior step (PriorSGD's
update, the command line's default path).  ``coupled``, ``decoupled``, ``proximal``: AdamW (lr 1e-3,
no weight decay: the prior replaces it) with that prior step (bayes_halo.training.prior_step), the
lambdas stepped by AdamW (``--hyper optimizer``) or set to their profile (``--hyper profile``).
After training: one-shot global pruning at 5 % and 2 % kept by magnitude and by HALO's learned
coefficient, validation and test accuracy of each.  One JSON file per run in --out.

    python experiments/own_loop/run.py --method proximal --xi 3e-3 --epochs 30 --seed 0 --out experiments/results/own_loop
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import bayes_halo
from bayes_halo.atomic import write_json
from bayes_halo.data import load_dataset
from bayes_halo.models import build_model
from bayes_halo.training.evaluate import split_score

KEEPS = (0.05, 0.02)
CRITERIA = ("magnitude", "halo-coefficient")


def train(method: str, hyper: str, xi: float, psi: float, epochs: int, seed: int, lr: float | None,
          threads: int) -> dict:
    """Train one run; returns its record (accuracies as fractions)."""
    torch.set_num_threads(threads)
    data = load_dataset("mnist", val_size=5000, seed=seed, download=False)
    torch.manual_seed(seed)
    net = build_model("lenet300", data.input_shape, data.n_classes)
    model = bayes_halo.attach(net, bayes_halo.HALO(xi=xi, psi=psi), n_data=data.n_train)
    if method == "sgd":
        lr = lr or 0.1
        optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
        model.attach_optimizer(optimizer)
    else:
        lr = lr or 1e-3
        optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
        model.attach_optimizer(optimizer, method=method, hyper=hyper)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [round(0.5 * epochs), round(0.75 * epochs)], 0.1)
    order = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for batch in torch.randperm(data.n_train, generator=order).split(100):
            loss = F.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - start
    record = {"method": method, "hyper": hyper if method != "sgd" else "optimizer", "xi": xi, "psi": psi, "lr": lr, "epochs": epochs, "seed": seed, "threads": threads,
              "train_seconds": seconds, "dense_val": split_score(net, data, "val"),
              "dense_test": split_score(net, data, "test"), "pruned": []}
    for criterion in CRITERIA:
        for keep in KEEPS:
            pruned = copy.deepcopy(model)
            pruned.prune(keep, criterion)
            record["pruned"].append({"criterion": criterion, "keep": keep,
                                     "val": split_score(pruned.net, data, "val"),
                                     "test": split_score(pruned.net, data, "test")})
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=("sgd", "coupled", "decoupled", "proximal"), required=True)
    parser.add_argument("--hyper", choices=("optimizer", "profile"), default="optimizer",
                        help="AdamW runs: the lambdas stepped by AdamW, or set to their profile (proximal only)")
    parser.add_argument("--xi", type=float, required=True)
    parser.add_argument("--psi", type=float, help="default: 2 xi (the ratio of the command line's defaults)")
    parser.add_argument("--lr", type=float, help="default: 0.1 (SGD), 1e-3 (AdamW)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    psi = args.psi if args.psi is not None else 2 * args.xi
    record = train(args.method, args.hyper, args.xi, psi, args.epochs, args.seed, args.lr, args.threads)
    name = f"{args.method}{'-profile' if args.hyper == 'profile' else ''}_xi{args.xi:g}_psi{psi:g}_e{args.epochs}_s{args.seed}.json"
    write_json(args.out / name, record)
    best = max(record["pruned"], key=lambda r: r["val"] if r["keep"] == 0.02 else -1)
    print(f"{name}: dense {record['dense_test']:.4f}, 2% {best['criterion']} val {best['val']:.4f} test {best['test']:.4f}, "
          f"{record['train_seconds']:.0f} s")


if __name__ == "__main__":
    main()
