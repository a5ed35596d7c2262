"""The fast torch objective and the Pyro model of a BayesianModule are one estimator."""
import copy

import pyro
import pytest
import torch
from torch import nn

from bayes_halo.errors import ConfigError
from bayes_halo.inference.map import map_guide, map_loss
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.priors import HALO
from tiny_models import make_prior, small_net

N, B = 200, 32




PRIOR_NAMES = ["none", "ridge", "laplace", "adaptive-laplace", "halo", "shared-halo"]


def randomize(module, generator):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))


def data(generator):
    return torch.randn(B, 6, generator=generator), torch.randint(0, 3, (B,), generator=generator)


@pytest.mark.parametrize("name", PRIOR_NAMES)
def test_autodelta_loss_is_n_times_fast_objective_plus_constant(name, float64):
    generator = torch.Generator().manual_seed(3)
    net = small_net()
    module = BayesianModule(net, make_prior(name, net), n_data=N)
    offsets, scale = [], []
    for _ in range(6):
        randomize(module, generator)
        x, y = data(generator)
        with pyro.settings.context(module_local_params=True):
            guide = map_guide(module)
            pyro_loss = map_loss(module, guide, x, y)
        fast = N * module.objective(x, y)
        offsets.append((pyro_loss - fast).item())
        scale.append(abs(fast.item()))
    assert (max(offsets) - min(offsets)) / max(scale) < 1e-9


@pytest.mark.parametrize("name", PRIOR_NAMES)
def test_one_optimiser_step_moves_every_parameter_identically(name, float64):
    """In Pyro's coordinate (positivity="exp") one SGD step on AutoDelta == one on the fast objective."""
    generator = torch.Generator().manual_seed(4)
    net = small_net()
    module = BayesianModule(net, make_prior(name, net), n_data=N, positivity="exp")
    randomize(module, generator)
    x, y = data(generator)
    lr = 0.05
    with pyro.settings.context(module_local_params=True):
        guide = map_guide(module)
        guide(x, y)
        before = {k: v.clone() for k, v in guide.median().items()}
        torch.testing.assert_close(before, module.site_values())
        pyro_opt = torch.optim.SGD(guide.parameters(), lr=lr / N)  # the ELBO is N times the objective
        map_loss(module, guide, x, y).backward()
        pyro_opt.step()
        after_pyro = guide.median()

    fast_opt = torch.optim.SGD([*module.network_parameters(), *module.hyper_parameters()], lr=lr)
    module.objective(x, y).backward()
    fast_opt.step()
    after_fast = module.site_values()
    assert set(after_pyro) == set(after_fast)
    for site in after_fast:
        assert not torch.equal(after_fast[site], before[site]), f"{site} did not move"
        torch.testing.assert_close(after_pyro[site], after_fast[site], rtol=1e-10, atol=1e-12)


def test_sites_follow_the_selection():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    assert BayesianModule(net, HALO(1e-3, 1e-3), N).sites == ("0.weight", "2.weight")
    assert BayesianModule(net, HALO(1e-3, 1e-3), N, scope="conv").sites == ("0.weight",)
    assert BayesianModule(net, HALO(1e-3, 1e-3), N, include_bias=True, exclude=["2"]).sites == ("0.weight", "0.bias")
    dense = BayesianModule(net, None, N)
    assert dense.sites == () and dense.prunable == ("0.weight", "2.weight")
    assert dense.penalty().item() == 0.0
    module = BayesianModule(net, HALO(1e-3, 1e-3), N)
    assert set(module.hyper_values()) == {"0.weight_lambda", "2.weight_lambda"}
    assert module.hyper("0.weight")["lambda"].shape == net[0].weight.shape
    with pytest.raises(ConfigError, match="unknown layer"):
        BayesianModule(net, HALO(1e-3, 1e-3), N, exclude=["classifier"])
    with pytest.raises(ConfigError, match="n_data"):
        BayesianModule(net, HALO(1e-3, 1e-3), 0)


def test_load_site_values_round_trip():
    net = small_net()
    module = BayesianModule(net, HALO(0.01, 0.02), N)
    values = {k: v + 0.5 if not k.endswith("lambda") else v * 3 for k, v in module.site_values().items()}
    module.load_site_values(values)
    torch.testing.assert_close(module.site_values(), values)
    with pytest.raises(ConfigError, match="unknown site"):
        module.load_site_values({"nope": torch.zeros(1)})


def test_abs_positivity_same_objective_and_the_papers_gradient_step(float64):
    """lambda = |raw|: the same objective at the same values, and one SGD step moves lambda by
    -lr * dR/dlambda = -lr * (psi - 2 xi |w| / lambda^3) (HALO's closed-form gradient)."""
    xi, psi, lr = 0.01, 0.02, 0.05
    generator = torch.Generator().manual_seed(5)
    net = small_net()
    exp_module = BayesianModule(net, HALO(xi, psi), n_data=N, positivity="exp")
    randomize(exp_module, generator)
    abs_module = BayesianModule(copy.deepcopy(net), HALO(xi, psi), n_data=N, positivity="abs")
    abs_module.load_site_values(exp_module.site_values())
    x, y = data(generator)
    torch.testing.assert_close(abs_module.objective(x, y), exp_module.objective(x, y))
    before = abs_module.site_values()
    optimizer = torch.optim.SGD([*abs_module.network_parameters(), *abs_module.hyper_parameters()], lr=lr)
    abs_module.objective(x, y).backward()
    optimizer.step()
    after = abs_module.site_values()
    for site in abs_module.sites:
        lam, w = before[f"{site}_lambda"], before[site]
        expected = lam - lr * (psi - 2 * xi * w.abs() / lam**3)
        torch.testing.assert_close(after[f"{site}_lambda"], expected.abs())
    with pytest.raises(ConfigError, match="positivity"):
        BayesianModule(small_net(), HALO(xi, psi), N, positivity="softplus")


def test_one_positivity_default_in_the_api_and_on_the_command_line():
    from bayes_halo.config import TrainConfig
    assert BayesianModule(small_net(), HALO(0.01, 0.02), N).positivity == TrainConfig().positivity == "abs"


def test_a_float64_network_trains_its_likelihood_in_float64(float64):
    """TrainingObjective casts outputs to float32 only under bf16 autocast."""
    from bayes_halo.training.objective import TrainingObjective
    net = small_net()  # float64 under the fixture
    module = BayesianModule(net, None, N)
    x, y = data(torch.Generator().manual_seed(6))
    step = TrainingObjective(module)(x, y)
    assert step.outputs.dtype == step.loss.dtype == torch.float64
    expected = torch.nn.functional.cross_entropy(net(x), y)  # an independent float64 computation
    assert step.loss.item() == expected.item()
