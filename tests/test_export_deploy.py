"""The saved form of an export: BatchNorm folded into its convolution (against the closed form
W' = s W, b' = s (b - mu) + beta), only where the convolution feeds the BatchNorm alone, and
channels-last activations; outputs equal to the unfolded network's."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bayes_halo.data.torchvision_compat import import_torchvision
from bayes_halo.export import export_network, load_export
from bayes_halo.export.deploy import ChannelsLastInput, conv_batchnorm_pairs, deployable, fold_batchnorms
from bayes_halo.models import build_model


def _randomise_norms(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine entries, so that folding has something to fold."""
    generator = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=generator))
            m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            m.weight.data.copy_(torch.randn(c, generator=generator))
            m.bias.data.copy_(torch.randn(c, generator=generator))
    return net.eval()


class Branching(nn.Module):
    """conv_a feeds its BatchNorm and a second path; conv_b -> norm_b alone; norm_c follows a pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.norm_a = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv_b, self.norm_b = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.norm_c = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv_a(x)
        y = F.relu(self.norm_a(a)) + a
        y = F.relu(self.norm_b(self.conv_b(y)))
        return self.norm_c(F.max_pool2d(y, 2)).flatten(1)


class Reused(nn.Module):
    """One conv + BatchNorm pair called twice: folding it would still be exact, but it is left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.norm(self.conv(x))))


def test_only_a_convolution_feeding_its_norm_alone_is_folded_and_the_fold_is_the_closed_form():
    net = _randomise_norms(Branching())
    x = torch.randn(5, 3, 8, 8)
    assert conv_batchnorm_pairs(net, x) == [("conv_b", "norm_b")]
    folded, count = fold_batchnorms(net, x)
    assert count == 1 and isinstance(folded.norm_b, nn.Identity) and isinstance(folded.norm_a, nn.BatchNorm2d)
    norm = net.norm_b
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    torch.testing.assert_close(folded.conv_b.weight, net.conv_b.weight * scale[:, None, None, None])
    torch.testing.assert_close(folded.conv_b.bias, norm.bias - scale * norm.running_mean)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)
    assert isinstance(net.norm_b, nn.BatchNorm2d)  # the original is untouched


def test_a_module_called_twice_is_not_folded():
    assert conv_batchnorm_pairs(_randomise_norms(Reused()), torch.randn(2, 3, 6, 6)) == []


@pytest.mark.parametrize("name", ["resnet20", "vgg16-bn", "torchvision-resnet18"])
def test_every_batchnorm_of_the_registered_cnns_folds(name):
    """In these networks each BatchNorm follows a convolution of its own (shortcut convolutions included)."""
    net = (import_torchvision().models.resnet18(num_classes=10) if name == "torchvision-resnet18"
           else build_model(name, (3, 32, 32), 10))
    net = _randomise_norms(net)
    x = torch.randn(4, 3, 32, 32)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    deployed, notes = deployable(net, x)
    assert isinstance(deployed, ChannelsLastInput)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert notes[0].startswith(f"{norms} BatchNorm layers folded")
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), net(x), atol=1e-4, rtol=1e-4)


def test_convolutions_see_channels_last_activations():
    net = _randomise_norms(build_model("resnet20", (3, 32, 32), 10))
    deployed, _ = deployable(net, torch.randn(2, 3, 32, 32))
    layouts = []
    for m in deployed.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_pre_hook(
                lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        deployed(torch.randn(3, 3, 32, 32))
    assert len(layouts) == 19 and all(layouts)  # resnet20: 1 + 9 blocks x 2 convolutions (option-A shortcuts)


class Viewing(nn.Module):
    """A forward that needs NCHW memory after its convolution (``.view``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc(y.view(y.shape[0], -1))


def test_a_network_that_needs_nchw_memory_keeps_it():
    net = Viewing().eval()
    x = torch.randn(2, 3, 6, 6)
    deployed, notes = deployable(net, x)
    assert not isinstance(deployed, ChannelsLastInput) and "kept NCHW activations" in notes[-1]
    torch.testing.assert_close(deployed(x), net(x))


def test_networks_without_convolutions_are_saved_as_they_are(tmp_path):
    net = build_model("lenet300", (1, 28, 28), 10)
    exported = export_network(net, (1, 28, 28))
    assert type(exported.deployed) is type(net)
    assert not any("BatchNorm" in note or "channels-last" in note for note in exported.removal.notes)
    x = torch.randn(3, 1, 28, 28)
    exported.save(tmp_path / "small.pt2")
    with torch.no_grad():
        torch.testing.assert_close(load_export(tmp_path / "small.pt2")(x), net.eval()(x))
