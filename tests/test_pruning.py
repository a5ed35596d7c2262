"""Pruning: exact keep counts, mask attachment, pruned copies, fine-tuning with fixed masks."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from bayes_halo.errors import ConfigError
from bayes_halo.models.selection import prunable_parameters
from bayes_halo.pruning import (apply_masks, count_zeros, keep_count, keep_masks,
                                magnitude_scores, pruned_copy, remove_masks, sparsity_table)

SHAPES = {"a.weight": (7, 5), "b.weight": (3, 4, 2), "c.weight": (11,)}


def _scores(kind: str, gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for name, shape in SHAPES.items():
        if kind == "normal":
            out[name] = torch.randn(shape, generator=gen)
        elif kind == "zeros":
            out[name] = torch.zeros(shape)
        else:  # few distinct integer values: heavy ties
            out[name] = torch.randint(0, 3, shape, generator=gen).float()
    return out


def _numpy_global(scores: dict[str, torch.Tensor], keep: float) -> np.ndarray:
    flat = np.concatenate([s.numpy().ravel() for s in scores.values()])
    n = max(1, round(keep * flat.size))
    mask = np.zeros(flat.size, dtype=bool)
    mask[np.argsort(-flat, kind="stable")[:n]] = True
    return mask


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4))


class TinyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.flatten(1))


def test_keep_count_rounds_half_even_and_keeps_at_least_one() -> None:
    assert keep_count(0.5, 5) == 2 and keep_count(0.5, 7) == 4  # 2.5 -> 2, 3.5 -> 4
    assert keep_count(0.3, 10) == 3
    assert keep_count(1e-9, 1000) == 1
    assert keep_count(1.0, 17) == 17


@pytest.mark.parametrize("keep", [0, 0.0, -0.1, 1.5, math.nan, math.inf])
def test_bad_keep_fraction_raises(keep: float) -> None:
    with pytest.raises(ConfigError, match="`keep` fraction must be in"):
        keep_count(keep, 10)
    with pytest.raises(ConfigError):
        keep_masks({"w": torch.ones(4)}, keep)


def test_bad_scores_and_mode_raise() -> None:
    with pytest.raises(ConfigError, match="NaN"):
        keep_masks({"w": torch.tensor([1.0, math.nan])}, 0.5)
    with pytest.raises(ConfigError, match="NaN"):
        keep_masks({"w": torch.tensor([1.0, math.nan])}, 0.5, by="layer")
    with pytest.raises(ConfigError, match="unknown `prune_by` mode"):
        keep_masks({"w": torch.ones(3)}, 0.5, by="channel")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        keep_masks({}, 0.5)


@pytest.mark.parametrize("kind", ["normal", "zeros", "integers"])
def test_kept_counts_are_exact(kind: str) -> None:
    gen = torch.Generator().manual_seed(123)
    rng = np.random.default_rng(7)
    scores = _scores(kind, gen)
    total = sum(s.numel() for s in scores.values())
    for keep in [*rng.uniform(1e-3, 1.0, size=40), 1e-6, 0.5, 1.0]:
        keep = float(keep)
        glob = keep_masks(scores, keep, by="global")
        assert all(m.dtype == torch.bool and m.shape == scores[n].shape for n, m in glob.items())
        assert sum(int(m.sum()) for m in glob.values()) == max(1, round(keep * total))
        flat = torch.cat([m.reshape(-1) for m in glob.values()]).numpy()
        np.testing.assert_array_equal(flat, _numpy_global(scores, keep))
        layer = keep_masks(scores, keep, by="layer")
        for name, mask in layer.items():
            assert int(mask.sum()) == max(1, round(keep * mask.numel()))


def test_keep_one_keeps_everything() -> None:
    scores = _scores("normal", torch.Generator().manual_seed(0))
    for by in ("global", "layer"):
        assert all(bool(m.all()) for m in keep_masks(scores, 1.0, by=by).values())


def test_global_mask_keeps_largest_magnitudes() -> None:
    params = {n: p for n, p in TinyConv().named_parameters() if n.endswith("weight")}
    masks = keep_masks(magnitude_scores(params), 0.2)
    kept = torch.cat([params[n].detach().abs()[m] for n, m in masks.items()])
    dropped = torch.cat([params[n].detach().abs()[~m] for n, m in masks.items()])
    assert kept.numel() == keep_count(0.2, kept.numel() + dropped.numel())
    assert kept.min() >= dropped.max()


def _manually_zeroed(net: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    clone = copy.deepcopy(net)
    params = dict(clone.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name].dtype))
    return clone


@pytest.mark.parametrize("make, x", [(mlp, torch.randn(5, 6)), (TinyConv, torch.randn(5, 1, 8, 8))])
def test_pruned_copy_matches_manual_zeroing(make, x: torch.Tensor) -> None:
    net = make()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = prunable_parameters(net, include_bias=True)
    for keep in (0.05, 0.3, 0.77):
        masks = keep_masks(magnitude_scores(params), keep)
        pruned = pruned_copy(net, masks)
        total = sum(m.numel() for m in masks.values())
        kept = keep_count(keep, total)
        assert sum(count_zeros(pruned, masks).values()) == total - kept
        assert sum(row["kept"] for row in sparsity_table(masks)) == kept
        assert torch.equal(pruned(x), _manually_zeroed(net, masks)(x))
        assert not any(n.endswith("_orig") for n, _ in pruned.named_parameters())
    assert net.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(not m._forward_pre_hooks for m in net.modules())


def test_sparsity_table_rows() -> None:
    masks = {"a": torch.tensor([True, False, False, True]), "b": torch.ones(2, 3, dtype=torch.bool)}
    assert sparsity_table(masks) == [{"layer": "a", "total": 4, "kept": 2, "fraction": 0.5},
                                     {"layer": "b", "total": 6, "kept": 6, "fraction": 1.0}]


def test_reapplying_masks_combines_by_and() -> None:
    net = mlp()
    params = prunable_parameters(net)
    gen = torch.Generator().manual_seed(3)
    first = keep_masks({n: torch.rand(p.shape, generator=gen) for n, p in params.items()}, 0.6)
    second = keep_masks({n: torch.rand(p.shape, generator=gen) for n, p in params.items()}, 0.6)
    apply_masks(net, first)
    apply_masks(net, second)
    expected = sum(int((first[n] & second[n]).sum()) for n in params)
    assert sum(count_zeros(net, params).values()) == sum(p.numel() for p in params.values()) - expected
    remove_masks(net)
    assert not any(n.endswith("_orig") for n, _ in net.named_parameters())
    assert all(not m._forward_pre_hooks for m in net.modules())
    assert sum(count_zeros(net, params).values()) == sum(p.numel() for p in params.values()) - expected


def test_apply_masks_rejects_unknown_names_and_shapes() -> None:
    net = mlp()
    with pytest.raises(ConfigError, match="no parameter"):
        apply_masks(net, {"9.weight": torch.ones(4, 10, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="no parameter"):
        apply_masks(net, {"0.kernel": torch.ones(10, 6, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="shape"):
        apply_masks(net, {"0.weight": torch.ones(6, 10, dtype=torch.bool)})
    assert all(not m._forward_pre_hooks for m in net.modules())


def test_fine_tuning_keeps_masked_weights_at_zero() -> None:
    net = mlp()
    params = prunable_parameters(net)
    masks = keep_masks(magnitude_scores(params), 0.25)
    start = {n: p.detach().clone() for n, p in params.items()}
    apply_masks(net, masks)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    x, y = torch.randn(32, 6), torch.randn(32, 4)
    for _ in range(5):
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    net(x)  # the pre-hook refreshes the effective weights
    for name, mask in masks.items():
        weight = net.get_submodule(name.rsplit(".", 1)[0]).weight
        assert torch.all(weight[~mask] == 0)
        assert torch.all(weight[mask] != start[name][mask])


def test_conv_scope_leaves_linear_layers_dense() -> None:
    net = TinyConv()
    masks = keep_masks(magnitude_scores(prunable_parameters(net, scope="conv")), 0.1)
    assert set(masks) == {"conv1.weight", "conv2.weight"}
    pruned = pruned_copy(net, masks)
    zeros = count_zeros(pruned, ["conv1.weight", "conv2.weight", "fc.weight", "fc.bias"])
    assert zeros["fc.weight"] == 0 and zeros["fc.bias"] == 0
    assert torch.equal(pruned.fc.weight, net.fc.weight)
    conv_total = net.conv1.weight.numel() + net.conv2.weight.numel()
    assert zeros["conv1.weight"] + zeros["conv2.weight"] == conv_total - keep_count(0.1, conv_total)
