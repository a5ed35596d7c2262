"""NUTS on small real-data models against closed forms and MAP, its potential against Pyro's, its guard rails."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from pyro.infer.mcmc.util import initialize_model
from sklearn.linear_model import Lasso
from torch import nn

from bayes_halo.diagnostics import arviz_compat
from bayes_halo.diagnostics.arviz_export import mcmc_inference_data
from bayes_halo.errors import ConfigError
from bayes_halo.inference.nuts import (MAX_LATENT_DIMS, Potential, _to_noncentred, hierarchical_sites, latent_dims,
                                      noncentred_model, run_nuts)
from bayes_halo.problems import diabetes_regression
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.priors import HALO, AdaptiveLaplace, Horseshoe, Laplace, Normal, RegularizedHorseshoe, SharedHALO

XI = 0.01


@pytest.fixture(scope="module")
def diabetes():
    return diabetes_regression()


def nuts(module, problem, **kwargs):
    options = dict(num_samples=200, warmup=200, num_chains=2, full_mass=True, target_accept_prob=0.8, progress=False)
    return run_nuts(module, problem.x, problem.y, **(options | kwargs))


@pytest.fixture(scope="module")
def ridge_run(diabetes):
    return nuts(diabetes.module(Normal(XI)), diabetes)


@pytest.fixture(scope="module")
def lasso_run(diabetes):
    return nuts(diabetes.module(Laplace(XI)), diabetes, seed=1)


def idata_of(result):
    return mcmc_inference_data(result.draws, diverging=result.diverging, step_size=result.step_size)


def gaussian_posterior(problem, xi):
    """Exact posterior of (w, b) under w ~ N(0, (N xi)^-1/2 I), flat b, known sigma."""
    x, y = problem.x.numpy(), problem.y.numpy()
    n, p = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    precision = design.T @ design / problem.likelihood.sigma**2 + np.diag([n * xi] * p + [0.0])
    cov = np.linalg.inv(precision)
    return cov @ design.T @ y / problem.likelihood.sigma**2, np.sqrt(np.diag(cov))


@pytest.mark.parametrize("run", ["ridge_run", "lasso_run"])
def test_chains_agree(run, request):
    result = request.getfixturevalue(run)
    rhat = arviz_compat.rhat(idata_of(result))
    assert float(rhat["weight"].max()) < 1.05 and float(rhat["bias"].max()) < 1.05
    assert result.draws["weight"].shape == (2, 200, 1, 10)
    assert result.diverging.shape == (2, 200) and result.num_divergences <= 3
    assert (result.step_size > 0).all() and (result.accept_rate > 0.6).all()


def test_ridge_posterior_matches_closed_form(diabetes, ridge_run):
    """Gaussian posterior: NUTS means within 4 MC standard errors, sds within 20%."""
    mean, sd = gaussian_posterior(diabetes, XI)
    idata = idata_of(ridge_run)
    ess = np.concatenate([arviz_compat.ess(idata)["weight"].values.ravel(), arviz_compat.ess(idata)["bias"].values.ravel()])
    flat = ridge_run.flat()
    draws = torch.cat([flat["weight"].squeeze(1), flat["bias"]], dim=1).numpy()
    mcse = draws.std(0) / np.sqrt(ess)
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * mcse), (draws.mean(0) - mean) / mcse
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.2)


def test_lasso_map_lies_in_the_nuts_bulk(diabetes, lasso_run):
    """The MAP under the Laplace prior sits inside every coefficient's central 90% interval.

    That MAP minimises ||y - Xw - b||^2/(2 sigma^2) + N xi ||w||_1, i.e. sklearn's
    Lasso(alpha = xi sigma^2); it has exact zeros, which the posterior does not.
    """
    x, y = diabetes.x.numpy(), diabetes.y.numpy()
    estimate = Lasso(alpha=XI * diabetes.likelihood.sigma**2, tol=1e-10, max_iter=100_000).fit(x, y).coef_
    assert (estimate == 0).sum() >= 1
    lo, hi = np.quantile(lasso_run.flat()["weight"].squeeze(1).numpy(), [0.05, 0.95], axis=0)
    assert ((estimate >= lo) & (estimate <= hi)).all(), (lo, estimate, hi)


def tiny_net_module(prior):
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 3), act=nn.Tanh(), fc2=nn.Linear(3, 3)))
    pilot = {k: torch.randn_like(v) for k, v in net.named_parameters() if k.endswith("weight")}
    prior = AdaptiveLaplace.from_pilot(0.02, pilot) if prior == "adaptive" else prior
    return BayesianModule(net, prior, n_data=20)


PRIORS = [Normal(0.05), Laplace(0.05), "adaptive", HALO(0.05, 0.05), SharedHALO(0.05, 0.05), Horseshoe(0.5),
          RegularizedHorseshoe(0.5)]


@pytest.mark.parametrize("noncentred", [False, True], ids=["centred", "noncentred"])
@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: p if isinstance(p, str) else p.name)
def test_potential_is_pyros_potential_of_the_model(prior, noncentred, float64):
    """The plain-torch potential equals Pyro's, built from (the reparametrised) module.model, up to a constant."""
    module = tiny_net_module(prior)
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    sites = hierarchical_sites(module) if noncentred else []
    model = noncentred_model(module) if sites else module.model
    start = {name: v for name, v in module.site_values().items() if "bias" in name}
    init, pyro_potential, _, _ = initialize_model(model, (x, y), max_plate_nesting=1,
                                                  init_strategy=init_to_value(values=start, fallback=init_to_median))
    assert any(name.endswith("_decentered") for name in init) == bool(sites)
    potential = Potential(module, x, y, sites)
    offsets, scale = [], []
    for _ in range(5):
        u = {name: v + 0.5 * torch.randn_like(v) for name, v in init.items()}
        offsets.append((potential(u) - pyro_potential(u)).item())
        scale.append(abs(potential(u).item()))
    assert max(offsets) - min(offsets) < 1e-9 * max(scale)


@pytest.mark.parametrize("prior", [HALO(0.05, 0.05), Horseshoe(0.5)], ids=["halo", "horseshoe"])
def test_noncentred_latents_map_back_to_the_site_values(diabetes, prior, float64):
    """``z = (w - loc)/scale(h)`` as Pyro's reparam computes it, then ``Potential.constrain``, recovers ``w``."""
    module = diabetes.module(prior)
    values = module.site_values()
    values["weight"] = torch.randn_like(values["weight"])
    for name, v in module.hyper_values().items():
        values[name] = torch.rand_like(v) + 0.1
    z = _to_noncentred(module, values, diabetes.x, diabetes.y)
    assert "weight" not in z and z["weight_decentered"].shape == values["weight"].shape
    potential = Potential(module, diabetes.x, diabetes.y, ["weight"])
    latents = {name: potential.transforms[name].inv(v) if name in potential.transforms else v for name, v in z.items()}
    back, _ = potential.constrain(latents)
    for name, value in values.items():
        torch.testing.assert_close(back[name], value)


def test_halo_sampling_returns_centred_positive_draws(diabetes):
    """A short HALO run on a slice of the data: draws of w and lambda (not z), lambda > 0."""
    x, y = diabetes.x[:60, :3], diabetes.y[:60]
    module = BayesianModule(nn.Linear(3, 1, dtype=torch.float64), HALO(0.05, 0.05), n_data=60,
                            likelihood=diabetes.likelihood)
    threads = torch.get_num_threads()
    result = run_nuts(module, x, y, num_samples=40, warmup=40, num_chains=1, num_threads=1, progress=False)
    assert torch.get_num_threads() == threads  # restored
    assert set(result.draws) == {"weight", "bias", "weight_lambda"}
    assert result.draws["weight_lambda"].shape == (1, 40, 1, 3) and (result.draws["weight_lambda"] > 0).all()
    assert result.draws["weight"].std(1).min() > 0  # the chain moved


def test_refuses_large_models_and_bad_arguments(diabetes):
    big = BayesianModule(nn.Linear(200, 101), Normal(XI), n_data=10)
    assert latent_dims(big) > MAX_LATENT_DIMS
    with pytest.raises(ConfigError, match="SVI"):
        run_nuts(big, torch.randn(10, 200), torch.randn(10))
    small = diabetes.module(Horseshoe())
    with pytest.raises(ConfigError, match="degenerate MAP"):
        run_nuts(small, diabetes.x, diabetes.y, init="map")
    with pytest.raises(ConfigError, match="init"):
        run_nuts(small, diabetes.x, diabetes.y, init="mode")
    with pytest.raises(ConfigError):
        run_nuts(small, diabetes.x, diabetes.y, target_accept_prob=1.0)
