"""Why seed 1 of the LeNet-5-Caffe study collapses: re-train its dense run, prune it as the study does
(L1 channel ranking at 153,000 MACs) and show which conv1 filters are kept, their biases, and how many
kept channels ever have a positive pre-activation on 500 test images.

    python experiments/structured_study/dead_filters.py
"""
from __future__ import annotations

import torch
from torch import nn

from bayes_halo.config.sections import RunConfig
from bayes_halo.data import load_dataset
from bayes_halo.groups import build_groupings
from bayes_halo.models import prunable_layers
from bayes_halo.pipeline import run_fit
from bayes_halo.pruning import pruned_copy
from bayes_halo.pruning.structured import keep_within_macs, norm_scores


def main() -> None:
    torch.set_num_threads(1)
    config = RunConfig.from_flat(model="lenet5-caffe", dataset="mnist", epochs=3, subset=8000, val_size=2000,
                                 keep=(1.0,), threads=1, download=False, prior="none", seed=1)
    data = load_dataset("mnist", None, val_size=2000, seed=1, download=False, subset=8000)
    net = run_fit(config, progress=False, data=data).module.net.eval()
    groupings = build_groupings("unit", net, prunable_layers(net), torch.zeros(2, 1, 28, 28))
    masks, report = keep_within_macs(net, groupings, norm_scores(groupings, dict(net.named_parameters()), p=1),
                                     (1, 28, 28), 153_000)
    kept = masks["conv1.weight"].flatten(1).any(1)
    print(f"units {report['units']}; kept conv1 filters {kept.nonzero().flatten().tolist()} with biases "
          f"{[round(b, 3) for b in net.conv1.bias[kept].tolist()]}")
    outputs: dict[str, torch.Tensor] = {}
    masked = pruned_copy(net, masks).eval()
    for name, module in masked.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(lambda m, a, out, name=name: outputs.__setitem__(name, out.detach()))
    with torch.no_grad():
        masked(data.x_test[:500])
    for name, out in outputs.items():
        positive = out.flatten(2).amax((0, 2)) > 0 if out.dim() == 4 else out.amax(0) > 0
        print(f"{name}: {int(positive.sum())} of {out.shape[1]} units ever positive")


if __name__ == "__main__":
    main()
