"""Groupings and structures: coverage, group counts, residual coupling (checked on the network's outputs)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bayes_halo.data.torchvision_compat import import_torchvision
from bayes_halo.errors import ConfigError
from bayes_halo.groups import (Grouping, Slices, along, attention_heads, build_groupings, check_groupings,
                               mlp_units)
from bayes_halo.models.registry import build_model
from bayes_halo.models.selection import prunable_layers

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)


def _net(name: str) -> tuple[nn.Module, tuple[int, int, int]]:
    torch.manual_seed(0)
    if name == "torchvision-resnet18":
        return import_torchvision().models.resnet18(num_classes=10), CIFAR
    shape = MNIST if name.startswith("lenet") else CIFAR
    return build_model(name, shape, 10), shape


def _groupings(net: nn.Module, shape: tuple[int, ...], structure: str) -> list[Grouping]:
    return build_groupings(structure, net, prunable_layers(net), torch.zeros(1, *shape))


def _summary(groupings: list[Grouping]) -> list[tuple[str, str, int, int]]:
    return [(g.name, g.kind, g.n_groups, g.size) for g in groupings]


def test_lenet5_caffe_unit_is_bayesian_compression_structure() -> None:
    net, shape = _net("lenet5-caffe")
    # conv channels: filter (C_in * 5 * 5) + bias; Linear input units: a column (out_features)
    assert _summary(_groupings(net, shape, "unit")) == [
        ("conv1:channels", "channel", 20, 1 * 25 + 1), ("conv2:channels", "channel", 50, 20 * 25 + 1),
        ("fc1:inputs", "input-unit", 800, 500), ("fc2:inputs", "input-unit", 500, 10)]


def test_lenet300_unit_and_out_unit() -> None:
    net, shape = _net("lenet300")
    assert _summary(_groupings(net, shape, "unit")) == [
        ("fc1:inputs", "input-unit", 784, 300), ("fc2:inputs", "input-unit", 300, 100),
        ("fc3:inputs", "input-unit", 100, 10)]
    # output units: row + bias; the output layer fc3 excluded
    assert _summary(_groupings(net, shape, "out-unit")) == [
        ("fc1:units", "unit", 300, 785), ("fc2:units", "unit", 100, 301)]
    with pytest.raises(ConfigError, match="BatchNorm"):
        _groupings(net, shape, "bn-scale")


NETWORKS = ["lenet300", "lenet5-caffe", "resnet20", "vgg16-bn", "resnet50-cifar", "torchvision-resnet18"]


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("structure", ["unit", "out-unit", "bn-scale"])
def test_every_grouped_tensor_is_covered_once(name: str, structure: str) -> None:
    net, shape = _net(name)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    if structure == "bn-scale" and not has_bn:
        pytest.skip("no BatchNorm")
    groupings = _groupings(net, shape, structure)
    params = dict(net.named_parameters())
    check_groupings(groupings, params)  # unique names, disjoint, shapes
    seen = 0
    for grouping in groupings:
        # distinct ids in the [G, d] matrix: scattering them must fill every member entry exactly once
        ids = torch.arange(seen, seen + grouping.n_groups * grouping.size, dtype=torch.float64)
        matrix = ids.reshape(grouping.n_groups, grouping.size)
        tensors = grouping.scatter(matrix)
        assert set(tensors) == set(grouping.tensor_names)
        values = torch.cat([t.reshape(-1) for t in tensors.values()]).sort().values
        assert torch.equal(values, ids)
        assert sum(params[n].numel() for n in tensors) == grouping.n_groups * grouping.size
        for n, t in tensors.items():
            assert t.shape == params[n].shape
        assert torch.equal(grouping.matrix(tensors), matrix)  # matrix is scatter's inverse
        norms = grouping.norms({n: params[n].detach() for n in grouping.tensor_names})
        assert torch.allclose(norms, grouping.matrix(params).detach().norm(dim=1))
        seen += ids.numel()
    if structure == "bn-scale":
        bns = [n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
        assert [g.name for g in groupings] == [f"{n}:scales" for n in bns]
        assert all(g.size == 1 for g in groupings)


def _stage_output_after_zeroing(net: nn.Module, shape: tuple[int, ...], grouping: Grouping, channel: int,
                                stage: nn.Module) -> torch.Tensor:
    """Set group ``channel`` of ``grouping`` to exactly zero and return ``stage``'s output on random input."""
    params = dict(net.named_parameters())
    with torch.no_grad():
        matrix = grouping.matrix(params).clone()
        matrix[channel] = 0.0
        for n, t in grouping.scatter(matrix).items():
            params[n].copy_(t)
    captured: list[torch.Tensor] = []
    handle = stage.register_forward_hook(lambda _m, _i, out: captured.append(out))
    net.eval()
    with torch.no_grad():
        net(torch.randn(4, *shape))
    handle.remove()
    return captured[0]


@pytest.mark.parametrize("name, grouping_name, stage, members", [
    # stem + the three blocks' last conv and BN of stage 0 (identity shortcuts): one coupled channel set
    ("resnet20", "conv1:channels", "stages.0",
     ["conv1.weight", "bn1.weight", "bn1.bias"]
     + [f"stages.0.{b}.{p}" for b in range(3) for p in ("conv2.weight", "bn2.weight", "bn2.bias")]),
    # option-A shortcut: stage 1's channels couple its own producers only
    ("resnet20", "stages.1.0.conv2:channels", None,
     [f"stages.1.{b}.{p}" for b in range(3) for p in ("conv2.weight", "bn2.weight", "bn2.bias")]),
    ("torchvision-resnet18", "conv1:channels", "layer1",
     ["conv1.weight", "bn1.weight", "bn1.bias"]
     + [f"layer1.{b}.{p}" for b in range(2) for p in ("conv2.weight", "bn2.weight", "bn2.bias")]),
    # a downsampling stage: its 1x1 shortcut convolution joins the coupled set
    ("torchvision-resnet18", "layer2.0.conv2:channels", "layer2",
     [f"layer2.{b}.{p}" for b in range(2) for p in ("conv2.weight", "bn2.weight", "bn2.bias")][:3]
     + ["layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight", "layer2.0.downsample.1.bias"]
     + [f"layer2.1.{p}" for p in ("conv2.weight", "bn2.weight", "bn2.bias")]),
])
def test_residual_coupling(name: str, grouping_name: str, stage: str | None, members: list[str]) -> None:
    net, shape = _net(name)
    groupings = {g.name: g for g in _groupings(net, shape, "unit")}
    grouping = groupings[grouping_name]
    assert sorted(grouping.tensor_names) == sorted(members)
    if stage is None:
        return
    # independent check: a zero group kills that residual channel for every input, and only that one
    out = _stage_output_after_zeroing(net, shape, grouping, 3, net.get_submodule(stage))
    assert torch.count_nonzero(out[:, 3]) == 0
    assert torch.count_nonzero(out[:, 2]) > 0


def test_vgg_channel_groups_hold_conv_bias_and_bn() -> None:
    net, shape = _net("vgg16-bn")
    groupings = _groupings(net, shape, "unit")
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    assert [g.name for g in groupings] == [f"{n}:channels" for n in convs] + ["classifier:inputs"]
    first = groupings[0]
    assert first.tensor_names == ("features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias")
    assert (first.n_groups, first.size) == (64, 3 * 9 + 3)


class _Block(nn.Module):
    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.fused = fused
        if fused:
            self.qkv = nn.Linear(8, 24)
        else:
            self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8, bias=False)
        self.proj = nn.Linear(8, 8)
        self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 8)

    def bayes_halo_groupings(self, structure: str) -> list[Grouping] | None:
        if structure != "unit":
            return None
        names = ("qkv",) * 3 if self.fused else ("q", "k", "v")
        return [attention_heads(self, "attn", *names, "proj", n_heads=2), mlp_units(self, "mlp", "fc1", "fc2")]


@pytest.mark.parametrize("fused", [False, True])
def test_attention_heads_and_mlp_units(fused: bool) -> None:
    block = _Block(fused)
    heads, mlp = build_groupings("unit", block, {})
    params = dict(block.named_parameters())
    check_groupings([heads, mlp], params)
    matrix = heads.matrix(params)
    # head 1: rows 4..7 of Q, K, V (each third of a fused projection), columns 4..7 of proj
    if fused:
        w, b = params["qkv.weight"], params["qkv.bias"]
        expected = [w[4:8], w[12:16], w[20:24]], [b[4:8], b[12:16], b[20:24]]
        parts = [torch.cat(expected[0]).reshape(-1), torch.cat(expected[1])]
    else:
        parts = [params["q.weight"][4:8].reshape(-1), params["q.bias"][4:8], params["k.weight"][4:8].reshape(-1),
                 params["k.bias"][4:8], params["v.weight"][4:8].reshape(-1)]
    parts.append(params["proj.weight"][:, 4:8].T.reshape(-1))
    assert torch.equal(matrix[1], torch.cat(parts))
    # per head: 3 x (4 rows of 8) weights, 4 bias entries per biased projection, 4 columns of 8 in proj
    assert (heads.n_groups, heads.size) == (2, 3 * 4 * 8 + 4 * (3 if fused else 2) + 4 * 8)
    unit = mlp.matrix(params)[5]
    assert torch.equal(unit, torch.cat([params["fc1.weight"][5], params["fc1.bias"][5:6], params["fc2.weight"][:, 5]]))
    assert build_groupings("weight", block, {}) == []


def test_bad_groupings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="exactly once"):
        Slices("w", 0, torch.tensor([[0], [0]]), (2, 3))
    with pytest.raises(ConfigError, match="disagree"):
        Grouping("g", "unit", (along("a", (2, 3), 0), along("b", (3, 3), 0)))
    first = Grouping("g1", "unit", (along("a", (2, 3), 0),))
    second = Grouping("g2", "input-unit", (along("a", (2, 3), 1),))
    with pytest.raises(ConfigError, match="two groupings"):
        check_groupings([first, second], {"a": torch.zeros(2, 3)})
    with pytest.raises(ConfigError, match="shape"):
        check_groupings([first], {"a": torch.zeros(3, 3)})
    with pytest.raises(ConfigError, match="example input"):
        build_groupings("unit", build_model("lenet5-caffe", MNIST, 10), prunable_layers(build_model("lenet5", MNIST, 10)))
