"""ArviZ result builders and posterior.nc: groups, dims, coords, dotted names, reduced mode (either ArviZ line)."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from bayes_halo.diagnostics.arviz_compat import group_names
from bayes_halo.diagnostics.arviz_export import (SUMMARY_STATISTICS, entry_selection, load_inference_data,
                                                 map_inference_data, mcmc_inference_data, mcmc_summary,
                                                 save_inference_data, site_dims, svi_inference_data)
from bayes_halo.errors import ConfigError
from bayes_halo.inference.map import fit_map
from bayes_halo.inference.nuts import run_nuts
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.models.likelihoods import Normal as NormalLikelihood
from bayes_halo.priors import HALO, Normal


def small_module(hidden=3, n_in=4):
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(n_in, hidden), act=nn.Tanh(), fc2=nn.Linear(hidden, 2)))
    return BayesianModule(net, HALO(0.1, 0.1), n_data=20)


def hand_draws(module, lead):
    """Draws of every site with leading shape ``lead``; lambdas positive."""
    return {name: torch.rand(*lead, *v.shape) + 0.1 if name.endswith("_lambda") else torch.randn(*lead, *v.shape)
            for name, v in module.site_values().items()}


def test_site_dims_name_layers_and_share_them_with_hyper_variables():
    dims = site_dims(small_module())
    assert dims["fc1.weight"] == ["fc1_out", "fc1_in"] and dims["fc1.bias"] == ["fc1_out"]
    assert dims["fc1.weight_lambda"] == dims["fc1.weight"]
    conv = BayesianModule(nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3))), Normal(0.1), n_data=5)
    assert site_dims(conv)["conv.weight"] == ["conv_out", "conv_in", "conv_kh", "conv_kw"]
    bare = BayesianModule(nn.Linear(3, 1), Normal(0.1), n_data=5)
    assert site_dims(bare) == {"weight": ["out", "in"], "bias": ["out"]}


def test_mcmc_round_trip_keeps_groups_dims_and_dotted_names(tmp_path):
    module = small_module()
    draws = hand_draws(module, (2, 25))
    diverging = torch.zeros(2, 25, dtype=torch.bool)
    diverging[1, 3] = True
    y = torch.randint(0, 2, (20,))
    idata = mcmc_inference_data(draws, diverging=diverging, step_size=torch.tensor([0.1, 0.2]),
                                dims=site_dims(module), coords={"fc1_in": list("abcd")}, observed=y)
    path = save_inference_data(idata, tmp_path / "posterior.nc")
    back = load_inference_data(path)
    assert set(group_names(back)) == {"posterior", "sample_stats", "observed_data"}
    assert back.posterior.attrs["inference"] == "mcmc"
    assert set(back.posterior.data_vars) == set(draws)  # "fc1.weight" etc., dots intact
    weight = back.posterior["fc1.weight"]
    assert weight.dims == ("chain", "draw", "fc1_out", "fc1_in")
    assert list(weight.coords["fc1_in"].values) == list("abcd")
    np.testing.assert_allclose(weight.values, draws["fc1.weight"].numpy())
    assert back.sample_stats.diverging.dtype == bool and int(back.sample_stats.diverging.sum()) == 1
    np.testing.assert_allclose(back.sample_stats.step_size.values[:, 0], [0.1, 0.2], rtol=1e-6)
    np.testing.assert_array_equal(back.observed_data.obs.values, y.numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["posterior.nc"]  # no temporary file left


def test_save_replaces_an_existing_file(tmp_path):
    module = small_module()
    path = tmp_path / "posterior.nc"
    for scale in (1.0, 2.0):
        draws = {k: v * scale for k, v in hand_draws(module, (1, 4)).items()}
        save_inference_data(mcmc_inference_data(draws), path)
        np.testing.assert_allclose(load_inference_data(path).posterior["fc2.bias"].values, draws["fc2.bias"].numpy())


def test_svi_posterior_is_one_chain_with_its_loss_history(tmp_path):
    module = small_module()
    draws = hand_draws(module, (30,))
    idata = svi_inference_data(draws, [5.0, 4.0, 3.5], dims=site_dims(module))
    back = load_inference_data(save_inference_data(idata, tmp_path / "posterior.nc"))
    assert back.posterior.sizes["chain"] == 1 and back.posterior.sizes["draw"] == 30
    assert back.posterior.attrs["inference"] == "svi"
    assert back.sample_stats.loss.dims == ("svi_step",)
    np.testing.assert_allclose(back.sample_stats.loss.values, [5.0, 4.0, 3.5])
    with pytest.raises(ConfigError, match="MCMC"):
        mcmc_summary(back)


def test_map_posterior_is_a_single_draw(float64):
    x = torch.randn(40, 3)
    y = x @ torch.tensor([1.0, 0.0, -2.0]) + 0.1 * torch.randn(40)
    module = BayesianModule(nn.Linear(3, 1), Normal(0.01), n_data=40, likelihood=NormalLikelihood(0.1))
    result = fit_map(module, x, y, steps=200, lr=0.05)
    idata = map_inference_data(result.values, dims=site_dims(module), observed=y)
    assert idata.posterior.sizes["chain"] == 1 and idata.posterior.sizes["draw"] == 1
    assert idata.posterior.attrs["inference"] == "map" and "sample_stats" not in group_names(idata)
    np.testing.assert_allclose(idata.posterior["weight"].values[0, 0], result.values["weight"].numpy())
    with pytest.raises(ConfigError):
        mcmc_summary(idata)


def test_nuts_draws_give_an_mcmc_summary_with_rhat_and_ess(float64):
    x = torch.randn(30, 2)
    y = x @ torch.tensor([1.0, -1.0]) + 0.5 * torch.randn(30)
    module = BayesianModule(nn.Linear(2, 1), Normal(0.05), n_data=30, likelihood=NormalLikelihood(0.5))
    result = run_nuts(module, x, y, num_samples=60, warmup=60, num_chains=2, progress=False)
    idata = mcmc_inference_data(result.draws, diverging=result.diverging, step_size=result.step_size,
                                dims=site_dims(module), observed=y)
    table = mcmc_summary(idata, ["weight"])
    assert list(table.index) == ["weight[0, 0]", "weight[0, 1]"]
    assert list(table.columns) == ["mean", "sd", "hdi90_lb", "hdi90_ub", "mcse_mean", "mcse_sd", "ess_bulk",
                                   "ess_tail", "r_hat"]
    flat = result.flat()["weight"].reshape(-1, 2).numpy()
    np.testing.assert_allclose(table["mean"], flat.mean(0), rtol=1e-10)
    np.testing.assert_allclose(table["sd"], flat.std(0, ddof=1), rtol=1e-10)
    assert table["r_hat"].max() < 1.2


def test_summaries_only_mode_is_small_and_exact(tmp_path):
    module = small_module(hidden=100, n_in=50)
    draws = hand_draws(module, (2, 100))
    full = save_inference_data(mcmc_inference_data(draws, dims=site_dims(module)), tmp_path / "full.nc")
    keep = ["fc2.weight", "fc2.weight_lambda"]
    small = save_inference_data(mcmc_inference_data(draws, dims=site_dims(module), keep_draws=keep),
                                tmp_path / "small.nc")
    assert small.stat().st_size < full.stat().st_size / 10
    back = load_inference_data(small)
    assert set(back.posterior.data_vars) == set(keep)
    summary = back.posterior_summary
    assert list(summary.coords["statistic"].values) == list(SUMMARY_STATISTICS)
    assert summary["fc1.weight"].dims == ("statistic", "fc1_out", "fc1_in")
    flat = draws["fc1.weight"].reshape(200, 100, 50).numpy()
    np.testing.assert_allclose(summary["fc1.weight"].sel(statistic="mean").values, flat.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(summary["fc1.weight"].sel(statistic="sd").values, flat.std(0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(summary["fc1.weight"].sel(statistic="q95").values, np.quantile(flat, 0.95, axis=0),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="unknown site"):
        mcmc_inference_data(draws, keep_draws=["fc9.weight"])


def test_entry_selection_bounds_every_site_and_shares_dims():
    dims = {"w": ["out", "in"], "w_lambda": ["out", "in"], "b": ["out"], "conv": ["c_out", "c_in", "c_kh", "c_kw"]}
    shapes = {"w": (300, 784), "w_lambda": (300, 784), "b": (300,), "conv": (20, 1, 5, 5), "tau": (3,)}
    chosen = entry_selection(shapes, dims, [], 64)
    assert len(chosen["out"]) * len(chosen["in"]) <= 64 and len(chosen["out"]) == len(chosen["in"]) == 8
    assert chosen["out"][0] == 0 and chosen["out"][-1] == 299 and len(set(chosen["out"])) == 8  # evenly spaced
    np.testing.assert_array_equal(chosen["in"], np.round(np.arange(8) * 783 / 7))
    assert np.prod([len(chosen[d]) for d in dims["conv"]]) <= 64 and len(chosen["c_in"]) == 1
    assert len(chosen["tau_dim_0"]) == 3  # small sites are kept whole
    full = entry_selection(shapes, dims, ["w"], 64)  # a site kept in full fixes its dims for its lambda and bias
    assert len(full["out"]) == 300 and len(full["in"]) == 784


def test_reduced_mode_keeps_a_bounded_sample_of_every_site_and_exact_summaries(tmp_path):
    module = small_module(hidden=30, n_in=40)
    draws = hand_draws(module, (12,))
    idata = svi_inference_data(draws, [1.0], dims=site_dims(module), max_entries=25)
    back = load_inference_data(save_inference_data(idata, tmp_path / "posterior.nc"))
    assert set(group_names(back)) == {"posterior", "posterior_summary", "sample_stats"}
    posterior = back.posterior
    assert set(posterior.data_vars) == set(draws)  # weights, biases and lambdas all present
    for site, value in draws.items():
        kept = posterior[site]
        assert kept.dims[:2] == ("chain", "draw") and kept.sizes["draw"] == 12
        assert 1 <= np.prod(kept.shape[2:]) <= 25, site
        index = np.ix_(*[kept.coords[d].values for d in kept.dims[2:]])  # coords are the original indices
        np.testing.assert_allclose(kept.values[0], value.numpy()[(slice(None), *index)])
    weight = posterior["fc1.weight"]
    assert weight.sizes["fc1_out"] == 5 and weight.sizes["fc1_in"] == 5
    np.testing.assert_array_equal(posterior["fc1.weight_lambda"].coords["fc1_in"], weight.coords["fc1_in"])
    np.testing.assert_allclose(back.posterior_summary["fc1.weight"].sel(statistic="mean").values,
                               draws["fc1.weight"].numpy().mean(0), rtol=1e-5, atol=1e-6)
    everything = load_inference_data(save_inference_data(
        svi_inference_data(draws, [1.0], dims=site_dims(module), keep_draws=list(draws), max_entries=25),
        tmp_path / "all.nc"))
    np.testing.assert_allclose(everything.posterior["fc1.weight"].values[0], draws["fc1.weight"].numpy())
    with pytest.raises(ConfigError, match="max_entries"):
        svi_inference_data(draws, [1.0], max_entries=-1)
