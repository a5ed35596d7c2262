"""Parameters and multiply-adds per example of a network, per Conv2d/Linear layer.

Multiply-adds (the literature's MACs; bias additions, activations and pooling not counted):
Conv2d ``C_out * (C_in / groups) * k_h * k_w * H_out * W_out``; Linear ``in * out`` per output
row (``out.numel() / batch * in``).  LeNet-5-Caffe: 288,000 + 1,600,000 + 400,000 + 5,000 = 2,293,000.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


@torch.no_grad()
def layer_costs(net: nn.Module, example: Tensor) -> list[dict[str, Any]]:
    """One row per Conv2d/Linear call on one example: name, units (output channels/features), shape, MACs."""
    rows: list[dict[str, Any]] = []
    names = {m: n for n, m in net.named_modules()}

    def hook(module: nn.Module, args: tuple, out: Tensor) -> None:
        per_example = out[0].numel()
        fan_in = (module.weight[0].numel() if isinstance(module, nn.Conv2d) else module.in_features)
        rows.append({"layer": names[module], "type": type(module).__name__, "units": int(module.weight.shape[0]),
                     "shape": list(module.weight.shape), "macs": int(per_example * fan_in)})

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = net.training
    try:
        net.eval()(example[:1])
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return rows


def costs(net: nn.Module, example: Tensor) -> dict[str, Any]:
    """``{"parameters", "macs", "layers"}``: every parameter of ``net``, MACs per example, per-layer rows."""
    layers = layer_costs(net, example)
    return {"parameters": sum(p.numel() for p in net.parameters()), "macs": sum(r["macs"] for r in layers),
            "layers": layers}


def architecture(layers: list[dict[str, Any]]) -> str:
    """``"784-300-100-10"``: the first layer's input width, then the units of each Conv2d/Linear."""
    return "-".join(str(v) for v in [layers[0]["shape"][1]] + [r["units"] for r in layers])


