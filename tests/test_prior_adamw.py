"""PriorAdamW against torch.optim.AdamW stepping on the autograd gradient of ``mean_nll + penalty``."""
import copy

import pytest
import torch

from bayes_halo.errors import ConfigError
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.priors import GroupHALO
from bayes_halo.training.adamw import PriorAdamW
from tiny_models import make_prior, small_net

N, B = 200, 32
LR, HYPER_LR, WD = 0.01, 0.003, 0.05


def make_module(name, positivity, generator, groups="weight"):
    net = small_net()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
        net[2].weight[:, 1] = 0.0  # an exactly-zero input unit (a zero group under "unit"), zero weights
    prior = GroupHALO(0.01, 0.02) if groups != "weight" else make_prior(name, net)
    module = BayesianModule(net, prior, N, positivity=positivity, groups=groups,
                            example_input=torch.zeros(2, 6) if groups != "weight" else None)
    with torch.no_grad():
        for r in module.hyper_parameters():  # lambdas away from their common start
            r.mul_(torch.exp(0.5 * torch.randn(r.shape, generator=generator, dtype=r.dtype)))
    return module


def torch_adamw(module):
    """torch.optim.AdamW as a user sets it up: the hyper-variables in their own group, no weight decay."""
    groups = [{"params": list(module.network_parameters()), "weight_decay": WD}]
    hyper = list(module.hyper_parameters())
    if hyper:
        groups.append({"params": hyper, "lr": HYPER_LR, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=LR, betas=(0.8, 0.99), eps=1e-6)


def run(module, optimizer, generator, objective, steps=4):
    for _ in range(steps):
        x, y = torch.randn(B, 6, generator=generator), torch.randint(0, 3, (B,), generator=generator)
        optimizer.zero_grad()
        loss = module.objective(x, y) if objective else module.likelihood.mean_nll(module(x), y)
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("positivity", ["abs", "exp"])
@pytest.mark.parametrize("name", ["none", "laplace", "adaptive-laplace", "halo", "halo-decay", "group-halo"])
def test_fused_adamw_steps_as_torch_adamw_on_the_autograd_gradient(name, positivity, float64):
    """Four steps, weight decay, exactly-zero weights and groups: PriorAdamW == AdamW on mean_nll + penalty."""
    generator = torch.Generator().manual_seed(3)
    fused = make_module(name, positivity, generator, groups="unit" if name == "group-halo" else "weight")
    reference = copy.deepcopy(fused)
    optimizer = PriorAdamW(fused, LR, betas=(0.8, 0.99), eps=1e-6, weight_decay=WD, hyper_lr=HYPER_LR)
    run(fused, optimizer, torch.Generator().manual_seed(4), objective=False)
    run(reference, torch_adamw(reference), torch.Generator().manual_seed(4), objective=True)
    after, expected = fused.state_dict(), reference.state_dict()
    assert set(after) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(after[key], value, rtol=1e-10, atol=1e-12, msg=key)
    assert not torch.equal(after["net.2.weight"], make_module(name, positivity, torch.Generator().manual_seed(3),
                                                              "unit" if name == "group-halo" else "weight")
                           .state_dict()["net.2.weight"])


def test_fused_adamw_equals_torch_adamw_with_the_coupled_prior_step(float64):
    """The own-loop path (torch AdamW + attach_optimizer(method="coupled")) and the fused one take the same steps."""
    generator = torch.Generator().manual_seed(5)
    fused = make_module("halo", "abs", generator)
    hooked = copy.deepcopy(fused)
    run(fused, PriorAdamW(fused, LR, weight_decay=WD), torch.Generator().manual_seed(6), objective=False)
    optimizer = torch.optim.AdamW(hooked.net.parameters(), lr=LR, weight_decay=WD)
    hooked.attach_optimizer(optimizer, method="coupled")
    run(hooked, optimizer, torch.Generator().manual_seed(6), objective=False)
    for (key, value), other in zip(fused.state_dict().items(), hooked.state_dict().values()):
        torch.testing.assert_close(value, other, rtol=1e-10, atol=1e-12, msg=key)


def test_compiled_update_matches_the_eager_update_and_follows_a_schedule():
    """float32: torch.compile of the same function; a learning-rate change neither recompiles nor is missed."""
    generator = torch.Generator().manual_seed(8)
    compiled = make_module("halo", "abs", generator)
    eager = copy.deepcopy(compiled)
    optimizers = [PriorAdamW(compiled, LR, weight_decay=WD, compile=True), PriorAdamW(eager, LR, weight_decay=WD)]
    for step in range(4):
        x, y = torch.randn(B, 6, generator=generator), torch.randint(0, 3, (B,), generator=generator)
        for module, optimizer in zip((compiled, eager), optimizers):
            optimizer.zero_grad()
            module.likelihood.mean_nll(module(x), y).backward()
            optimizer.step()
            if step == 1:
                for group in optimizer.param_groups:
                    group["lr"] *= 0.1
    for (key, value), other in zip(compiled.state_dict().items(), eager.state_dict().values()):
        torch.testing.assert_close(value, other, rtol=1e-5, atol=1e-7, msg=key)


def test_state_dict_resume_gives_the_uninterrupted_steps(float64):
    """Two steps, save, two more from a fresh optimiser loaded from the state dict == four steps."""
    generator = torch.Generator().manual_seed(9)
    straight = make_module("halo", "abs", generator)
    resumed = copy.deepcopy(straight)
    run(straight, PriorAdamW(straight, LR), torch.Generator().manual_seed(1), objective=False, steps=4)
    data = torch.Generator().manual_seed(1)
    first = PriorAdamW(resumed, LR)
    run(resumed, first, data, objective=False, steps=2)
    second = PriorAdamW(resumed, LR)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    assert second.param_groups[0]["step"] == 2
    run(resumed, second, data, objective=False, steps=2)
    for (key, value), other in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(value, other), key


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"betas": (0.9, 1.0)}, {"eps": -1.0}, {"weight_decay": -0.1}])
def test_bad_settings_are_refused(bad):
    module = make_module("halo", "abs", torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError):
        PriorAdamW(module, **{"lr": 1e-3, **bad})
