"""Load an exported network with torch alone.

    from bayes_halo.export import load_export
    net = load_export("small.pt2")      # what torch.export.load("small.pt2").module() returns
    logits = net(images)                # any batch size

This file imports nothing but torch: an application that does not install bayes_halo runs the
same two lines with ``torch.export.load``.  The module is already in inference mode (BatchNorm
uses its running statistics; dropout is off); ``.eval()`` is not needed, nor supported.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_export(path: str | Path) -> nn.Module:
    """The network saved by ``python -m bayes_halo.export`` (a ``torch.export`` program), ready to call."""
    return torch.export.load(str(path)).module()
