"""Throughput of one 3x3 convolution (C -> C channels, stride 1, padding 1) against its width, on the CPU.

    python benchmarks/conv_width.py

The widths are those of ResNet-56's three stages (16, 32, 64 channels at 32x32, 16x16 and 8x8) and what
50 % and 70 % of channels removed leave of them.  Multiply-adds per call ``B H W 9 C^2``; the table gives
milliseconds per call (median of ``--rounds`` rounds) and multiply-adds per second, NCHW and channels-last
(the layout exports run in), at batch 256 and ``--threads`` threads.  A width's "efficiency" is its
multiply-adds per second over the full width's: the fraction of the multiply-add speed-up that removing
channels can deliver in that stage.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see bayes_halo/__init__.py

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

STAGES = ((32, 16), (16, 32), (8, 64))  # (height = width, full channels)
REMOVED = (0.0, 0.5, 0.7)


def seconds_per_call(conv: nn.Module, x: torch.Tensor, rounds: int, calls: int = 10) -> float:
    """Median over ``rounds`` of the mean time of ``calls`` calls."""
    with torch.inference_mode():
        for _ in range(3):
            conv(x)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                conv(x)
            times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"| H = W | channels | removed | layout | ms per call | GMAC/s | efficiency against the full width |")
    print("|---" * 7 + "|")
    for size, full in STAGES:
        for layout in (torch.contiguous_format, torch.channels_last):
            base = None
            for removed in REMOVED:
                width = round(full * (1 - removed))
                conv = nn.Conv2d(width, width, 3, padding=1, bias=False).eval().to(memory_format=layout)
                x = torch.rand(args.batch, width, size, size).contiguous(memory_format=layout)
                seconds = seconds_per_call(conv, x, args.rounds)
                rate = args.batch * size * size * 9 * width * width / seconds
                base = base or rate
                name = "NCHW" if layout is torch.contiguous_format else "channels-last"
                print(f"| {size} | {width} | {100 * removed:.0f} % | {name} | {1e3 * seconds:.2f} | {rate / 1e9:.1f} | "
                      f"{rate / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
