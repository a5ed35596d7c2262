"""Check the GPU path in a few minutes and print one summary table.

    python benchmarks/gpu_check.py                         # CUDA GPU 0, real MNIST (--data-dir data)
    python benchmarks/gpu_check.py --data-dir /path/to/data
    python benchmarks/gpu_check.py --device cpu --dataset digits   # dry run of the same code on the CPU

What it runs, all with the default LeNet-300-100 schedule cut to ``--epochs`` (default 2):

1. ``run_fit`` with HALO on the device in float32 and in bf16 autocast (accuracies dense and
   at 5 % kept);
2. training speed, steps per second of the last epoch (the first one pays for start-up), of
   plain training (no prior) and HALO, each in both precisions;
3. the float32 HALO fit again inside a one-process ``torch.distributed`` group (NCCL on CUDA,
   gloo on the CPU; env:// rendezvous on localhost and a free port), that is through
   DistributedDataParallel, compared with the plain run of step 1;
4. one CIFAR training step (batch 64, CIFAR-shaped uint8 input through crop, flip and
   normalisation) of VGG-16-bn and ResNet-56 with the paper's CIFAR recipe, plain and HALO
   (``--cifar-steps`` timed steps after a warm-up that pays the fused update's compile); a
   failure here is reported in its row, not raised.

Exit status 0 when every run finished and the one-process group reproduced the plain run's
accuracy to within one test example; 1 otherwise; 2 when the device is missing.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch

from bayes_halo.data import load_dataset
from bayes_halo.distributed import distributed_runtime, resolve_device
from bayes_halo.errors import BayesHaloError
from bayes_halo.config import RunConfig
from bayes_halo.config.recipes import recipe
from bayes_halo.data import BatchTransform
from bayes_halo.data.augment import crop_draws
from bayes_halo.training.trainer import build_optimizer
from bayes_halo.pipeline import build_module, run_fit, train_module


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def steps_per_second(config: RunConfig, data, steps_per_epoch: int) -> float:
    """Training speed in the last epoch of ``config`` (one process on its device)."""
    module = build_module(config, data.input_shape, data.n_classes, data.n_train)
    history = train_module(config, module, data).history
    return steps_per_epoch / history[-1]["seconds"]


def cifar_step_ms(model: str, halo: bool, device: torch.device, steps: int) -> float:
    """Milliseconds per CIFAR training step of ``model`` (batch 64, the paper's recipe), device-synchronised."""
    settings = RunConfig().replace(**{**recipe("paper-cifar").settings, "model": model, "device": str(device)})
    settings = (settings.replace(prior="halo", xi=1e-8, psi=1e-8, lambda_decay=1e-4) if halo
                else settings.replace(prior="none"))
    module = build_module(settings, (3, 32, 32), 10, 45_000).to(device)
    optimizer = build_optimizer(module, settings.train, n_steps=settings.train.epochs * 704)
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device=device, generator=generator)
    y = torch.randint(0, 10, (64,), device=device, generator=generator)
    transform = BatchTransform((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    draws = crop_draws(64, torch.Generator().manual_seed(0)).to(device)
    module.train()

    def step() -> None:
        loss = module.likelihood.mean_nll(module.net(transform(x, draws)), y)  # the step adds the prior's gradient
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: cuDNN autotuning and the compile of the fused update
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 1000 * (time.perf_counter() - start) / steps


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a dry run (default: cuda)")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "digits"))
    parser.add_argument("--data-dir", default="data", help="torchvision's MNIST/ folder (default: data)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cifar-steps", type=int, default=10, help="timed CIFAR steps per network (0: skip)")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except BayesHaloError as err:
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"bf16 supported: {device.type != 'cuda' or torch.cuda.is_bf16_supported()}")
    val_size = 5000 if args.dataset == "mnist" else 200
    try:
        data = load_dataset(args.dataset, args.data_dir, val_size=val_size, seed=0).to(device)
    except BayesHaloError as err:
        print(f"gpu_check: {err}", file=sys.stderr)
        return 2
    base = RunConfig.from_flat(prior="halo", dataset=args.dataset, data_dir=args.data_dir, val_size=val_size,
                               epochs=args.epochs, keep=(0.05,), device=str(device))
    steps = -(-data.n_train // base.train.batch_size)
    rows: list[tuple[str, str, str]] = []
    fits = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("32", "bf16"):
            config = base.replace(precision=precision)
            start = time.perf_counter()
            fits[precision] = run_fit(config, Path(tmp) / precision, progress=False, data=data)
            metrics = fits[precision].metrics
            pruned = next(r for r in metrics["pruned"] if r["criterion"] == "magnitude")
            rows.append((f"HALO fit, {args.epochs} epochs", precision,
                         f"{time.perf_counter() - start:.1f} s in all; val {metrics['dense']['val_accuracy']:.2%}, "
                         f"test {metrics['dense']['test_accuracy']:.2%}, test at 5 % kept "
                         f"{pruned['test_accuracy']:.2%}"))
        for prior in ("none", "halo"):
            for precision in ("32", "bf16"):
                config = base.replace(prior=prior, precision=precision)
                rows.append((f"training speed, prior {prior}", precision,
                             f"{steps_per_second(config, data, steps):.0f} steps/s (batch {base.train.batch_size})"))
        os.environ.update(MASTER_ADDR="localhost", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1",
                          LOCAL_RANK=str(device.index or 0))
        with distributed_runtime(str(device)) as runtime:
            backend = torch.distributed.get_backend()
            grouped = run_fit(base, Path(tmp) / "group", progress=False, data=data, runtime=runtime)
        plain = fits["32"]
        gap = max((a - b).abs().max().item() for a, b in zip(grouped.module.state_dict().values(),
                                                             plain.module.state_dict().values()))
        test_gap = abs(grouped.metrics["dense"]["test_accuracy"] - plain.metrics["dense"]["test_accuracy"])
        rows.append((f"one-process {backend} group (DDP)", "32",
                     f"test {grouped.metrics['dense']['test_accuracy']:.2%}; vs the plain run: max |dw| {gap:.1e}, "
                     f"test accuracy gap {test_gap:.2%}"))
    for model in ("vgg16-bn", "resnet56") if args.cifar_steps > 0 else ():
        try:
            plain, halo = (cifar_step_ms(model, h, device, args.cifar_steps) for h in (False, True))
            rows.append((f"CIFAR step, {model}, batch 64", "32",
                         f"plain {plain:.1f} ms, HALO {halo:.1f} ms, HALO / plain {halo / plain:.3f}"))
        except Exception as err:  # report and go on: the rest of the table still says what works
            rows.append((f"CIFAR step, {model}, batch 64", "32", f"FAILED: {type(err).__name__}: {err}"[:200]))
        width = max(len(r[0]) for r in rows)
    print(f"\n{'check':<{width}}  prec  result")
    for check, precision, result in rows:
        print(f"{check:<{width}}  {precision:<4}  {result}")
    return 0 if test_gap <= 1 / len(data.y_test) + 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())
