"""BayesianModule and PriorSGD with group priors: the Pyro model, the fast objective and the fused step agree."""
import copy

import pyro
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bayes_halo.errors import ConfigError
from bayes_halo.groups import Grouping, Slices, along
from bayes_halo.inference.map import map_guide, map_loss
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.priors import HALO, GroupAdaptiveLaplace, GroupHALO, GroupLaplace
from bayes_halo.training.optim import PriorSGD

N, B = 200, 16
SHAPE = (1, 6, 6)


class TinyResNet(nn.Module):
    """conv0 -> BN -> (+ conv1(relu)) residual, conv2, flatten, fc: channels of conv0/conv1 are coupled."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0, self.bn0 = nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn0(self.conv0(x))
        h = F.relu(h + self.conv1(F.relu(h)))
        return self.fc(F.relu(self.conv2(h)).flatten(1))


def make_prior(name, module_for_pilot=None):
    if name == "group-adaptive-laplace":
        pilot = {site: module_for_pilot.site_value(site).detach() for site in module_for_pilot.groupings}
        return GroupAdaptiveLaplace.from_pilot(0.01, pilot)
    return {"group-laplace": GroupLaplace(0.01), "group-halo": GroupHALO(0.01, 0.02)}[name]


def make_module(name, groups="unit", positivity="exp", generator=None):
    net = TinyResNet()
    if generator is not None:
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
    example = torch.zeros(1, *SHAPE)
    dense = BayesianModule(net, None, N, groups=groups, example_input=example)
    prior = make_prior(name, dense)
    return BayesianModule(net, prior, N, groups=groups, example_input=example, positivity=positivity,
                          include_bias=True)


def data(generator):
    return torch.randn(B, *SHAPE, generator=generator), torch.randint(0, 3, (B,), generator=generator)


PRIORS = ["group-laplace", "group-adaptive-laplace", "group-halo"]


def test_sites_are_the_groupings():
    module = make_module("group-halo")
    assert module.sites == ("conv0:channels", "conv2:channels", "fc:inputs")
    coupled = module.groupings["conv0:channels"]
    assert coupled.tensor_names == ("conv0.weight", "conv0.bias", "bn0.weight", "bn0.bias", "conv1.weight",
                                    "conv1.bias")
    assert (coupled.n_groups, coupled.size) == (3, 9 + 1 + 2 + 27 + 1)
    assert module.hyper("conv0:channels")["lambda"].shape == (3,)
    assert module.prunable == ("conv0.weight", "conv0.bias", "conv1.weight", "conv1.bias", "conv2.weight",
                               "conv2.bias", "fc.weight", "fc.bias")  # prunable: unchanged meaning
    with pytest.raises(ConfigError, match="per weight"):
        BayesianModule(TinyResNet(), HALO(1e-3, 1e-3), N, groups="unit", example_input=torch.zeros(1, *SHAPE))
    with pytest.raises(ConfigError, match="group prior"):
        BayesianModule(TinyResNet(), GroupHALO(1e-3, 1e-3), N)
    with pytest.raises(ConfigError, match="unknown `groups`"):
        BayesianModule(TinyResNet(), GroupHALO(1e-3, 1e-3), N, groups="channels")


def test_default_groups_keep_per_weight_sites():
    module = BayesianModule(TinyResNet(), HALO(1e-3, 1e-3), N)
    assert module.groupings == {} and module.sites == module.prunable


@pytest.mark.parametrize("name", PRIORS)
def test_autodelta_loss_is_n_times_fast_objective_plus_constant(name, float64):
    generator = torch.Generator().manual_seed(3)
    module = make_module(name, generator=generator)
    module.eval()  # BatchNorm on running statistics: the same function in both paths
    offsets, scale = [], []
    for _ in range(4):
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
        x, y = data(generator)
        with pyro.settings.context(module_local_params=True):
            pyro_loss = map_loss(module, map_guide(module), x, y)
        fast = N * module.objective(x, y)
        offsets.append((pyro_loss - fast).item())
        scale.append(abs(fast.item()))
    assert (max(offsets) - min(offsets)) / max(scale) < 1e-9


def test_site_values_round_trip_and_model_sites():
    module = make_module("group-halo")
    values = module.site_values()
    assert values["fc:inputs"].shape == (16, 3) and "fc.weight" not in values and "fc.bias" in values
    changed = {k: v + 0.5 if not k.endswith("lambda") else v * 3 for k, v in values.items()}
    module.load_site_values(changed)
    torch.testing.assert_close(module.site_values(), changed)
    torch.testing.assert_close(module.net.fc.weight, changed["fc:inputs"].T)
    conditioned = pyro.poutine.condition(module.model, data=changed)
    trace = pyro.poutine.trace(conditioned).get_trace(*data(torch.Generator().manual_seed(0)))
    sampled = {n for n, s in trace.nodes.items() if s["type"] == "sample" and n != "obs"}
    assert sampled == set(values) | {"data"}  # every latent site (conditioned) and the data plate


@pytest.mark.parametrize("positivity", ["abs", "exp"])
@pytest.mark.parametrize("name", PRIORS)
def test_prior_gradients_are_the_autograd_gradients_of_the_penalty(name, positivity, float64):
    generator = torch.Generator().manual_seed(5)
    module = make_module(name, positivity=positivity, generator=generator)
    with torch.no_grad():
        module.net.conv2.weight[1] = 0.0  # a zero group (conv2 channel 1; its bias too)
        module.net.conv2.bias[1] = 0.0
    params = [p for p, _ in module.prior_gradients()]
    expected = torch.autograd.grad(module.penalty(), params, allow_unused=True)
    for (param, got), want in zip(module.prior_gradients(), expected):
        torch.testing.assert_close(got, want if want is not None else torch.zeros_like(got), rtol=1e-12, atol=1e-15)
    grads = {id(p): g for p, g in module.prior_gradients()}
    assert torch.count_nonzero(grads[id(module.net.conv2.weight)][1]) == 0


def _permuted_grouping():
    """fc's input units in a shuffled order: exercises the gather/scatter (non-arange) path."""
    index = torch.randperm(16, generator=torch.Generator().manual_seed(0)).reshape(8, 2)
    return Grouping("fc:pairs", "input-unit", (Slices("fc.weight", 1, index, (3, 16)),))


@pytest.mark.parametrize("positivity", ["abs", "exp"])
@pytest.mark.parametrize("name", PRIORS + ["group-halo-permuted"])
def test_fused_group_steps_are_bit_for_bit_the_autograd_path(name, positivity):
    """float32, momentum, weight decay, exactly-zero groups: PriorSGD == torch SGD on mean_nll + penalty."""
    generator = torch.Generator().manual_seed(9)
    if name == "group-halo-permuted":
        net = TinyResNet()
        groupings = [_permuted_grouping(), Grouping("conv2:channels", "channel",
                                                        (along("conv2.weight", (4, 3, 3, 3), 0),))]
        fused = BayesianModule(net, GroupHALO(0.01, 0.02), N, groups=groupings, positivity=positivity)
    else:
        fused = make_module(name, positivity=positivity, generator=generator)
    with torch.no_grad():
        fused.net.conv2.weight[2] = 0.0  # exactly-zero groups
        fused.net.conv2.bias[2] = 0.0
        for r in fused.hyper_parameters():
            r.mul_(torch.exp(0.5 * torch.randn(r.shape, generator=generator)))
    reference = copy.deepcopy(fused)
    start = fused.net.conv2.weight.detach().clone()
    lr, hyper_lr, momentum, wd = 0.05, 0.03, 0.9, 1e-3
    optimizer = PriorSGD(fused, lr, momentum, weight_decay=wd, hyper_lr=hyper_lr)
    sgd = torch.optim.SGD([{"params": list(reference.network_parameters()), "weight_decay": wd},
                           {"params": list(reference.hyper_parameters()), "lr": hyper_lr, "weight_decay": 0.0}],
                          lr=lr, momentum=momentum)
    for _ in range(3):
        x, y = data(generator)
        optimizer.zero_grad()
        fused.likelihood.mean_nll(fused(x), y).backward()
        optimizer.step()
        sgd.zero_grad()
        reference.objective(x, y).backward()
        sgd.step()
    after, expected = fused.state_dict(), reference.state_dict()
    assert set(after) == set(expected)
    for key, value in expected.items():
        assert torch.equal(after[key], value), key
    assert not torch.equal(after["net.conv2.weight"], start)
