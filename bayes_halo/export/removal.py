"""Remove dead units from any network with Torch-Pruning's ``DependencyGraph`` (no home-made tracer).

The dependency graph couples every slice that indexes one channel/unit: the producers of index
``j`` (rows ``j`` of Conv2d/Linear weights and biases, BatchNorm entries ``j``, over all the
layers that a residual addition ties together) and its consumers (columns ``j`` of the next
Conv2d/Linear weights; after ``flatten`` the block of features of channel ``j``).  Index ``j`` is

* **zero** when every producer emits exactly 0 whatever the input: each Conv2d/Linear row and
  bias entry is 0, and each BatchNorm has ``beta_j = 0`` and ``gamma_j * mean_j = 0``
  (``BN(0) = beta_j - gamma_j mean_j / sqrt(var_j + eps)``; a zero filter before a BatchNorm with
  ``beta_j != 0`` is a *constant*, not a zero);
* **unused** when every consumer slice is 0;
* **constant** when every Conv2d/Linear producer row is 0 (biases, BatchNorm anything): the
  value ``v`` entering each consumer does not depend on the input, so it folds into the
  consumer's bias, ``b'_o = b_o + sum_p W[o, p] v_p`` (a Conv2d sums ``W[o, j, :, :] c_j``;
  exact only without padding and for a spatially constant ``v``, so other constants stay);
  the folded consumer slices are then 0 and the index is unused.

The option-A ResNet shortcut is swapped for an exact :class:`~.scatter.ChannelScatter` first
(a position it writes is neither zero nor constant; a channel it reads is used).  Zero and
unused indices go (``group.prune``), which can make others zero, unused or constant, so
the passes repeat to a fixed point.  Groups that reach the network's output are never touched,
nor are the network's inputs (no group is rooted at them).  The caller checks the outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import Tensor, nn

from .scatter import ChannelScatter, ChannelScatterPruner, replace_zero_pad_shortcuts

ROOTS = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class Removal:
    """What the fixed point did: indices removed, constant indices folded, passes, notes on what stayed."""

    removed: int = 0
    folded: int = 0
    passes: int = 0
    notes: list[str] = field(default_factory=list)


def remove_dead_units(net: nn.Module, example: Tensor) -> Removal:
    """Remove (in place) every zero, unused or foldable-constant index of ``net`` (see the module docstring)."""
    net.eval()
    replace_zero_pad_shortcuts(net, example)
    with torch.enable_grad():  # Torch-Pruning traces through autograd
        graph = tp.DependencyGraph().build_dependency(net, example_inputs=example,
                                                      customized_pruners={ChannelScatter: ChannelScatterPruner()})
    outputs = [m for m, node in graph.module2node.items() if isinstance(m, nn.Module) and not node.outputs]
    result = Removal()
    changed = True
    while changed:
        changed = False
        result.passes += 1
        for group in graph.get_all_groups(ignored_layers=outputs, root_module_types=ROOTS):
            n = len(group.items[0].idxs)
            zero, constant = _producer_state(graph, group, n)
            foldable = constant & ~zero
            if foldable.any():
                folded = _fold_constants(graph, group, foldable, net, example)
                result.folded += int(folded.sum())
                kept = foldable & ~folded
                if kept.any():
                    note = (f"{_root_name(graph, group)}: {int(kept.sum())} constant unit(s) kept "
                            "(a consumer pads or is not foldable)")
                    if note not in result.notes:
                        result.notes.append(note)
            dead = zero | _unused(graph, group, n)
            if dead.all():
                dead[0] = False
                note = f"{_root_name(graph, group)}: every unit is dead; one kept so the layer has a width"
                if note not in result.notes:
                    result.notes.append(note)
            if dead.any():
                group.prune(dead.nonzero().reshape(-1).tolist())
                result.removed += int(dead.sum())
                changed = True
    return result


def _root_name(graph: tp.DependencyGraph, group) -> str:
    return graph._module2name.get(group.items[0].dep.target.module, "?")


def _scatter_all(flags: Tensor, roots: list[int], n: int) -> Tensor:
    """``out[r] = all(flags[i] for i with roots[i] == r)`` (``True`` where no slice maps to ``r``)."""
    out = torch.ones(n, dtype=torch.long)
    out.scatter_reduce_(0, torch.tensor(roots, dtype=torch.long), flags.long().cpu(), "amin")
    return out.bool()


def _producer_state(graph: tp.DependencyGraph, group, n: int) -> tuple[Tensor, Tensor]:
    """Per root index: (emits exactly 0, every Conv2d/Linear producer row is 0)."""
    zero, constant = torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    for item in group.items:
        module = item.dep.target.module
        if not graph.is_out_channel_pruning_fn(item.dep.handler):
            continue
        if isinstance(module, ChannelScatter):  # a written position carries another channel, not a constant
            written = torch.zeros(module.out_channels, dtype=torch.bool)
            written[module.index.cpu()] = True
            silent = ~written[torch.tensor(item.idxs, dtype=torch.long)]
            zero &= _scatter_all(silent, item.root_idxs, n)
            constant &= _scatter_all(silent, item.root_idxs, n)
            continue
        if not _has_parameters(module):
            continue
        idx = torch.tensor(item.idxs, dtype=torch.long, device=_device(module))
        if isinstance(module, ROOTS) and _plain(module):
            rows = module.weight.detach().index_select(0, idx).flatten(1).eq(0).all(1)
            bias = module.bias.detach()[idx].eq(0) if module.bias is not None else torch.ones_like(rows)
            zero &= _scatter_all(rows & bias, item.root_idxs, n)
            constant &= _scatter_all(rows, item.root_idxs, n)
        elif isinstance(module, NORMS) and module.running_mean is not None:
            mean = module.running_mean[idx]
            gamma = module.weight.detach()[idx] if module.weight is not None else torch.ones_like(mean)
            beta = module.bias.detach()[idx] if module.bias is not None else torch.zeros_like(gamma)
            zero &= _scatter_all(beta.eq(0) & (gamma * mean).eq(0), item.root_idxs, n)
        else:  # a parametrised layer this module does not know: its units are never dead
            zero &= False
            constant &= False
    return zero, constant


def _consumers(graph: tp.DependencyGraph, group) -> list:
    """The group items that read the index (input-channel pruning of a parametrised layer)."""
    return [item for item in group.items if graph.is_in_channel_pruning_fn(item.dep.handler)
            and (_has_parameters(item.dep.target.module) or isinstance(item.dep.target.module, ChannelScatter))]


def _unused(graph: tp.DependencyGraph, group, n: int) -> Tensor:
    """Per root index: every consumer slice is exactly 0."""
    unused = torch.ones(n, dtype=torch.bool)
    for item in _consumers(graph, group):
        module = item.dep.target.module
        if isinstance(module, ChannelScatter):
            read = torch.zeros(module.in_channels, dtype=torch.bool)
            read[module.source.cpu()] = True
            unused &= _scatter_all(~read[torch.tensor(item.idxs, dtype=torch.long)], item.root_idxs, n)
            continue
        if not (isinstance(module, ROOTS) and _plain(module)):
            return torch.zeros(n, dtype=torch.bool)
        idx = torch.tensor(item.idxs, dtype=torch.long, device=_device(module))
        columns = module.weight.detach().index_select(1, idx).transpose(0, 1).flatten(1).eq(0).all(1)
        unused &= _scatter_all(columns, item.root_idxs, n)
    return unused


@torch.no_grad()
def _fold_constants(graph: tp.DependencyGraph, group, candidates: Tensor, net: nn.Module, example: Tensor) -> Tensor:
    """Fold the constant indices ``candidates`` into their consumers' biases; returns those folded.

    The inputs of every consumer are recorded on two different inputs; an index folds only when
    its entries agree on both (input-independent), and for a Conv2d consumer are spatially
    constant and the convolution has no padding.  Folded consumer slices are set to 0.
    """
    consumers = _consumers(graph, group)
    modules = [item.dep.target.module for item in consumers]
    if not modules or not all(isinstance(m, ROOTS) and _plain(m) for m in modules):
        return torch.zeros_like(candidates)
    seen: dict[nn.Module, list[Tensor]] = {}

    def record(module: nn.Module, args: tuple) -> None:
        seen.setdefault(module, []).append(args[0].detach())

    hooks = [i.dep.target.module.register_forward_pre_hook(record) for i in consumers]
    try:
        probe = torch.randn(2, *example.shape[1:], dtype=example.dtype, device=example.device)
        net(probe)
    finally:
        for hook in hooks:
            hook.remove()
    ok = candidates.clone()
    values = []
    for item in consumers:
        module = item.dep.target.module
        if len(seen.get(module, [])) != 1:
            return torch.zeros_like(candidates)
        x = seen[module][0].double()
        idx = torch.tensor(item.idxs, dtype=torch.long, device=x.device)
        v = x.index_select(1, idx)                               # [2, positions, ...]
        same = v[0].eq(v[1]).flatten(1).all(1) if v.dim() > 2 else v[0].eq(v[1])
        if isinstance(module, nn.Conv2d):
            flat = v[0].flatten(1)
            same &= flat.eq(flat[:, :1]).all(1) & (not any(p != 0 for p in module.padding))
        ok &= _scatter_all(same.cpu(), item.root_idxs, len(candidates))
        values.append(v[0])
    for item, v in zip(consumers, values):
        module = item.dep.target.module
        positions = [k for k, r in enumerate(item.root_idxs) if ok[r]]
        if not positions:
            continue
        cols = torch.tensor([item.idxs[k] for k in positions], dtype=torch.long, device=module.weight.device)
        vals = v[torch.tensor(positions, device=v.device)]
        weight = module.weight.detach().double().index_select(1, cols)
        shift = weight @ vals if isinstance(module, nn.Linear) else (weight.sum((2, 3)) * vals[:, 0, 0]).sum(1)
        if module.bias is None:
            module.bias = nn.Parameter(torch.zeros(module.weight.shape[0], dtype=module.weight.dtype,
                                                   device=module.weight.device))
        module.bias.data += shift.to(module.bias.dtype)
        module.weight.data.index_fill_(1, cols, 0)
    return ok


def _plain(module: nn.Module) -> bool:
    """A Linear, or a Conv2d with ``groups=1`` (the layouts whose rows/columns are read here)."""
    return isinstance(module, nn.Linear) or module.groups == 1


def _has_parameters(module) -> bool:
    return isinstance(module, nn.Module) and any(True for _ in module.parameters(recurse=False))


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters(recurse=False)).device
