"""The fused optimiser against torch.optim.SGD on the autograd gradient of ``objective``."""
import copy

import pytest
import torch

from bayes_halo.errors import ConfigError
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.training.optim import PriorSGD
from tiny_models import make_prior, small_net

N, B = 200, 32




def modules(name, positivity, generator):
    net = small_net()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
    module = BayesianModule(net, make_prior(name, net), N, positivity=positivity)
    with torch.no_grad():
        for r in module.hyper_parameters():  # lambdas away from their common start
            r.mul_(torch.exp(0.5 * torch.randn(r.shape, generator=generator, dtype=r.dtype)))
            r.add_(0.1 * torch.randn(r.shape, generator=generator, dtype=r.dtype))
    return module, copy.deepcopy(module)


def batches(generator, n=3):
    return [(torch.randn(B, 6, generator=generator), torch.randint(0, 3, (B,), generator=generator))
            for _ in range(n)]


@pytest.mark.parametrize("positivity", ["abs", "exp"])
@pytest.mark.parametrize("name", ["none", "ridge", "laplace", "adaptive-laplace", "halo", "halo-decay",
                                  "shared-halo"])
def test_fused_steps_equal_sgd_on_the_autograd_gradient(name, positivity, float64):
    """Three momentum steps: PriorSGD on the likelihood alone == torch SGD on mean_nll + penalty."""
    generator = torch.Generator().manual_seed(7)
    fused, reference = modules(name, positivity, generator)
    lr, hyper_lr, momentum, wd = 0.05, 0.03, 0.9, 1e-3
    optimizer = PriorSGD(fused, lr, momentum, weight_decay=wd, hyper_lr=hyper_lr)
    groups = [{"params": list(reference.network_parameters()), "weight_decay": wd},
              {"params": list(reference.hyper_parameters()), "lr": hyper_lr, "weight_decay": 0.0}]
    sgd = torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=momentum)
    after, expected = step_both(fused, optimizer, reference, sgd, generator)
    for site, value in expected.items():
        torch.testing.assert_close(after[site], value, rtol=1e-10, atol=1e-12)


def step_both(fused, optimizer, reference, sgd, generator):
    """The same batches through PriorSGD (likelihood back-propagated) and torch SGD on the whole objective."""
    for x, y in batches(generator):
        optimizer.zero_grad()
        fused.likelihood.mean_nll(fused(x), y).backward()
        optimizer.step()
        sgd.zero_grad()
        reference.objective(x, y).backward()
        sgd.step()
    return fused.site_values(), reference.site_values()


def test_back_propagating_the_penalty_too_is_refused():
    module, _ = modules("halo", "abs", torch.Generator().manual_seed(0))
    optimizer = PriorSGD(module, 0.1, 0.9)
    x, y = batches(torch.Generator().manual_seed(1), 1)[0]
    module.objective(x, y).backward()
    with pytest.raises(ConfigError, match="likelihood alone"):
        optimizer.step()


@pytest.mark.parametrize("positivity", ["abs", "exp"])
def test_fused_halo_is_bit_for_bit_the_unfused_path(positivity):
    """float32: the same operations in the same order as autograd through HALO.penalty + torch SGD,
    with exactly-zero weights present: the subgradient of |w| at 0 is 0 on both paths, so weights
    that are 0 and see no likelihood gradient (their inputs are 0) stay exactly 0."""
    generator = torch.Generator().manual_seed(9)
    fused, reference = modules("halo", positivity, generator)
    for module in (fused, reference):
        with torch.no_grad():
            module.net[0].weight[:, :3] = 0.0
            module.net[0].weight[0, 3] = -0.0
    optimizer = PriorSGD(fused, 0.1, 0.9)
    sgd = torch.optim.SGD([{"params": list(reference.network_parameters())},
                           {"params": list(reference.hyper_parameters())}], lr=0.1, momentum=0.9)
    for x, y in batches(generator):
        x[:, :3] = 0.0
        optimizer.zero_grad()
        fused.likelihood.mean_nll(fused(x), y).backward()
        optimizer.step()
        sgd.zero_grad()
        reference.objective(x, y).backward()
        sgd.step()
    after, expected = fused.site_values(), reference.site_values()
    assert all(torch.equal(after[site], value) for site, value in expected.items())
    assert torch.count_nonzero(after["0.weight"][:, :3]) == 0


def test_compiled_update_is_the_eager_update_bit_for_bit():
    """torch.compile of the same function (the default run's path) against eager, float32."""
    generator = torch.Generator().manual_seed(8)
    compiled, eager = modules("halo", "abs", generator)
    opt_c = PriorSGD(compiled, 0.05, 0.9, compile=True)
    opt_e = PriorSGD(eager, 0.05, 0.9)
    for step, (x, y) in enumerate(batches(generator)):
        for module, optimizer in ((compiled, opt_c), (eager, opt_e)):
            optimizer.zero_grad()
            module.likelihood.mean_nll(module(x), y).backward()
            optimizer.step()
        if step == 1:  # a schedule step changes the learning rate without recompiling
            for optimizer in (opt_c, opt_e):
                for group in optimizer.param_groups:
                    group["lr"] *= 0.1
    after, expected = compiled.site_values(), eager.site_values()
    assert all(torch.equal(after[site], value) for site, value in expected.items())


def test_config_builds_the_fused_optimiser_and_the_decayed_prior():
    from bayes_halo.pipeline import build_prior
    from bayes_halo.config import RunConfig, TrainConfig
    from bayes_halo.training.optim import COMPILE_FROM_WEIGHT_STEPS, compile_pays
    from bayes_halo.training.fused import fused_update
    from bayes_halo.training.trainer import build_optimizer

    assert build_prior(RunConfig.from_flat(prior="halo", lambda_decay=1e-4)).lambda_decay == 1e-4
    for bad in ({"lambda_decay": -1.0}, {"prior": "laplace", "lambda_decay": 1e-4}, {"compile_update": "yes"}):
        with pytest.raises(ConfigError):
            RunConfig.from_flat(**bad)
    module, _ = modules("halo", "abs", torch.Generator().manual_seed(0))
    assert type(build_optimizer(BayesianModule(small_net(), None, N), TrainConfig())) is torch.optim.SGD
    optimizer = build_optimizer(module, TrainConfig(compile_update="auto"), n_steps=10)
    assert isinstance(optimizer, PriorSGD) and optimizer._update is fused_update  # too short to pay
    n_weights = sum(w.numel() for w in module.weights().values())
    assert compile_pays(module, int(COMPILE_FROM_WEIGHT_STEPS // n_weights) + 1)
    assert not compile_pays(module, int(COMPILE_FROM_WEIGHT_STEPS // n_weights) - 1)
