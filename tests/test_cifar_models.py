"""CIFAR networks: parameter counts against closed forms and published figures; BatchNorm under the prior."""
import math

import pyro
import pytest
import torch
from pyro import poutine
from torch import nn

from bayes_halo.errors import ConfigError
from bayes_halo.inference.svi import fit_svi
from bayes_halo.models import build_model, prunable_parameters
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.models.resnet_cifar import CifarResNet, ZeroPadShortcut
from bayes_halo.models.vgg import VGG16BN
from bayes_halo.priors import HALO

CIFAR = (3, 32, 32)


def total(net):
    return sum(p.numel() for p in net.parameters())


def six_n_plus_two_conv_weights(n, projection):
    """Stem 3->16, then stages of n blocks (two 3x3 convs each) at 16, 32, 64 channels."""
    stage1 = 2 * n * 9 * 16 * 16
    stage2 = 9 * 16 * 32 + (2 * n - 1) * 9 * 32 * 32
    stage3 = 9 * 32 * 64 + (2 * n - 1) * 9 * 64 * 64
    shortcuts = 16 * 32 + 32 * 64 if projection else 0
    return 9 * 3 * 16 + stage1 + stage2 + stage3 + shortcuts


def six_n_plus_two_bn(n, projection):
    """Two BN parameters per channel after the stem and after each conv (and each projection)."""
    return 2 * (16 + 2 * n * (16 + 32 + 64) + ((32 + 64) if projection else 0))


# name: (conv weights, number of convs, all parameters for K classes)
def expected(name, k):
    if name == "vgg16-bn":
        plan = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
        conv = sum(9 * a * b for a, b in plan)
        biases = sum(b for _, b in plan)
        return conv, 13, conv + biases + 2 * biases + 512 * k + k
    if name == "resnet18-cifar":
        widths = [64, 128, 256, 512]
        conv = 9 * 3 * 64 + 4 * 9 * 64 * 64
        bn = 2 * 64 + 4 * 2 * 64
        for before, width in zip(widths, widths[1:]):
            conv += 9 * before * width + 3 * 9 * width * width + before * width
            bn += 5 * 2 * width
        return conv, 1 + 16 + 3, conv + bn + 512 * k + k
    n, projection = {"resnet20": (3, False), "resnet56": (9, False), "resnet50-cifar": (8, True)}[name]
    conv = six_n_plus_two_conv_weights(n, projection)
    return conv, 1 + 6 * n + (2 if projection else 0), conv + six_n_plus_two_bn(n, projection) + 64 * k + k


# published sizes (millions): VGG-16-bn 14.7 (reference recipe), He et al. ResNet-20 0.27 and ResNet-56 0.85,
# the paper's depth-50 CIFAR ResNet 0.76, the CIFAR ResNet-18 of the pruning literature 11.2
PUBLISHED = {"vgg16-bn": (14.7, 1), "resnet20": (0.27, 2), "resnet56": (0.85, 2), "resnet50-cifar": (0.76, 2),
             "resnet18-cifar": (11.2, 1)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts(name):
    net = build_model(name, CIFAR, 10)
    conv_weights, n_convs, params = expected(name, 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == n_convs
    assert sum(m.weight.numel() for m in convs) == conv_weights
    assert total(net) == params
    published, digits = PUBLISHED[name]
    assert round(params / 1e6, digits) == published
    assert total(build_model(name, CIFAR, 100)) == expected(name, 100)[2]


def test_counts_stated_by_the_reference_recipe():
    """The authors' scripts: VGG-16-bn 14,710,464 conv weights + 4,224 biases; depth-50: 51 convs, 754,096."""
    vgg = prunable_parameters(build_model("vgg16-bn", CIFAR, 10), "conv", include_bias=True)
    assert sum(p.numel() for n, p in vgg.items() if n.endswith("weight")) == 14_710_464
    assert sum(p.numel() for n, p in vgg.items() if n.endswith("bias")) == 4_224
    deep = prunable_parameters(build_model("resnet50-cifar", CIFAR, 100), "conv")
    assert (len(deep), sum(p.numel() for p in deep.values())) == (51, 754_096)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_batchnorm_and_classifier_are_never_selected_under_conv_scope(name):
    net = build_model(name, CIFAR, 10)
    modules = dict(net.named_modules())
    selected = prunable_parameters(net, "conv", include_bias=True)
    assert all(isinstance(modules[n.rpartition(".")[0]], nn.Conv2d) for n in selected)
    bn = {f"{m}.{p}" for m, mod in modules.items() if isinstance(mod, nn.BatchNorm2d) for p in ("weight", "bias")}
    assert bn and not bn & set(prunable_parameters(net, "all", include_bias=True))
    convs = [m for m in modules.values() if isinstance(m, nn.Conv2d)]
    assert len(selected) == len(convs) + sum(m.bias is not None for m in convs)


@pytest.mark.parametrize("name", ["resnet20", "resnet50-cifar"])
def test_resnets_map_images_to_logits(name):
    net = build_model(name, CIFAR, 100)
    assert net(torch.randn(2, *CIFAR)).shape == (2, 100)


def test_vgg_maps_images_to_logits_and_needs_32_pixels():
    assert VGG16BN(CIFAR, 10, width=8)(torch.randn(3, *CIFAR)).shape == (3, 10)
    with pytest.raises(ConfigError, match="32x32"):
        VGG16BN((3, 28, 28), 10)


def test_option_a_shortcut_subsamples_and_appends_zero_channels():
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, :16], x[:, :, 0::2, 0::2])
    assert torch.count_nonzero(out[:, 16:]) == 0


def tiny_nets():
    torch.manual_seed(0)
    return [VGG16BN(CIFAR, 10, width=2), CifarResNet(CIFAR, 10, (1, 1, 1), (4, 8, 16), "B")]


@pytest.mark.parametrize("index", [0, 1])
def test_pyro_model_gives_batchnorm_flat_priors_and_the_likelihood_the_batch(index, float64):
    net = tiny_nets()[index]
    module = BayesianModule(net, HALO(1e-4, 1e-4), n_data=100, scope="conv", include_bias=True)
    x, y = torch.randn(4, *CIFAR), torch.tensor([0, 3, 5, 9])
    trace = poutine.trace(poutine.condition(module.model, data=module.site_values())).get_trace(x, y)
    bn = [f"{m}.{p}" for m, mod in net.named_modules() if isinstance(mod, nn.BatchNorm2d) for p in ("weight", "bias")]
    for name in bn:
        assert isinstance(trace.nodes[name]["fn"], pyro.distributions.ImproperUniform)
        assert float(trace.nodes[name]["fn"].log_prob(trace.nodes[name]["value"]).sum()) == 0.0
    for name in module.sites:
        assert f"{name}_lambda" in trace.nodes and not isinstance(trace.nodes[name]["fn"],
                                                                 pyro.distributions.ImproperUniform)
    # -log p changes with BatchNorm's parameters exactly as N * (the fast objective) does: flat prior
    def neg_log_joint():
        conditioned = poutine.condition(module.model, data=module.site_values())
        return -float(poutine.trace(conditioned).get_trace(x, y).log_prob_sum())

    def objective():
        with torch.no_grad():
            return float(module.objective(x, y))

    before, fast_before = neg_log_joint(), objective()
    with torch.no_grad():
        for name in bn:
            module.net.get_parameter(name).add_(0.3)
    assert neg_log_joint() - before == pytest.approx(100 * (objective() - fast_before), rel=1e-4)


def test_train_mode_batchnorm_makes_each_output_depend_on_the_batch():
    """Documented behaviour: in train mode BN uses batch statistics and updates its running buffers."""
    net = tiny_nets()[1]
    module = BayesianModule(net, HALO(1e-4, 1e-4), n_data=100, scope="conv")
    x = torch.randn(6, *CIFAR)
    running = net.bn1.running_mean.clone()
    model = poutine.condition(module.model, data=module.site_values())
    with torch.no_grad():
        alone, together = model(x[:3]), model(x)
    assert not torch.allclose(alone, together[:3], atol=1e-4)
    assert not torch.equal(net.bn1.running_mean, running)
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x[:3]), model(x)[:3])


@pytest.mark.parametrize("engine", ["pyro", "fast"])
def test_one_svi_step_on_small_batchnorm_nets(engine):
    for net in tiny_nets():
        module = BayesianModule(net, HALO(1e-4, 1e-4), n_data=100, scope="conv", include_bias=True)
        x, y = torch.randn(4, *CIFAR), torch.tensor([1, 2, 3, 4])
        result = fit_svi(module, x, y, epochs=1, batch_size=4, engine=engine, progress=False)
        assert len(result.losses) == 1 and math.isfinite(result.losses[0])
        means = result.mean()
        bn_weight = next(n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)) + ".weight"
        assert bn_weight in means and means[bn_weight].shape == module.net.get_parameter(bn_weight).shape
