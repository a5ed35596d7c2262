"""Shrinkage diagnostics against numpy on hand-made draws; posterior pruning on a small fitted classifier."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from bayes_halo.data import load_dataset
from bayes_halo.training.evaluate import accuracy_of_predictions
from bayes_halo.diagnostics.posterior_pruning import (CRITERIA, best_criteria, compare_criteria,
                                                      criterion_scores)
from bayes_halo.diagnostics.shrinkage import WeightShrinkage, layer_summary, quantiles, weight_shrinkage
from bayes_halo.errors import ConfigError
from bayes_halo.inference.svi import fit_svi
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.models.likelihoods import Normal as NormalLikelihood
from bayes_halo.priors import HALO, Laplace, SharedHALO
from bayes_halo.pruning import keep_count


# --------------------------------------------------------------------------- diagnostics on hand-made draws
def hand_made(num=40, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(loc=rng.normal(0, 0.3, (3, 4)), scale=0.1, size=(num, 3, 4))
    lam = np.exp(rng.normal(-1, 0.5, size=(num, 3, 4)))
    w_map = rng.normal(0, 0.3, (3, 4))
    return w, lam, w_map


def test_quantiles_are_numpy_linear_quantiles():
    values = np.random.default_rng(1).normal(size=(37, 5, 2))
    probs = [0.0, 0.05, 0.5, 0.95, 1.0]
    np.testing.assert_allclose(quantiles(torch.tensor(values), probs).numpy(), np.quantile(values, probs, axis=0))


@pytest.mark.parametrize("relative", [True, False])
def test_weight_shrinkage_equals_numpy(relative):
    w, lam, w_map = hand_made()
    xi, eps, level = 0.02, 0.3 if relative else 0.05, 0.8
    draws = {"fc.weight": torch.tensor(w), "fc.weight_lambda": torch.tensor(lam)}
    d = weight_shrinkage(draws, {"fc.weight": torch.tensor(w_map)}, ["fc.weight"], HALO(xi, 1.0),
                         eps=eps, relative=relative, level=level)["fc.weight"]
    threshold = eps * np.sqrt(np.mean(w_map**2)) if relative else eps
    mean, sd = w.mean(0), w.std(0, ddof=1)
    coef = xi / lam**2
    assert d.eps == pytest.approx(threshold)
    for got, want in [(d.mean, mean), (d.sd, sd), (d.snr, np.abs(mean) / sd), (d.shift, mean - w_map),
                      (d.p_small, (np.abs(w) < threshold).mean(0)), (d.coefficient.mean, coef.mean(0)),
                      (d.coefficient.median, np.median(coef, 0)), (d.coefficient.lower, np.quantile(coef, 0.1, 0)),
                      (d.coefficient.upper, np.quantile(coef, 0.9, 0))]:
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    assert 0 < d.p_small.mean() < 1  # the threshold cuts through the draws, so the check sees both sides

    row, = layer_summary({"fc.weight": d})
    assert row["layer"] == "fc.weight" and row["n_weights"] == 12
    assert row["mean_abs_shift"] == pytest.approx(np.abs(mean - w_map).mean())
    assert row["median_snr"] == pytest.approx(np.median(np.abs(mean) / sd))
    assert row["mean_p_small"] == pytest.approx((np.abs(w) < threshold).mean())
    assert row["expected_small"] == pytest.approx((np.abs(w) < threshold).mean(0).sum())
    assert row["median_coefficient"] == pytest.approx(np.median(np.median(coef, 0)))


def test_shared_halo_coefficient_is_one_number_and_other_priors_have_none():
    w, lam, w_map = hand_made()
    draws = {"w": torch.tensor(w), "w_lambda": torch.tensor(lam[:, 0, 0])}
    d = weight_shrinkage(draws, {"w": torch.tensor(w_map)}, ["w"], SharedHALO(0.02, 1.0))["w"]
    assert d.coefficient.mean.shape == ()
    assert d.coefficient.mean.item() == pytest.approx(np.mean(0.02 / lam[:, 0, 0] ** 2))
    plain = weight_shrinkage(draws, {"w": torch.tensor(w_map)}, ["w"], Laplace(0.02))["w"]
    assert plain.coefficient is None and layer_summary({"w": plain})[0]["median_coefficient"] is None
    with pytest.raises(ConfigError, match="2 posterior draws"):
        weight_shrinkage({"w": torch.tensor(w[:1])}, {"w": torch.tensor(w_map)}, ["w"])


def test_snr_with_zero_sd_and_inclusion_tie_break():
    """Inclusion ties (S + 1 possible values) are broken by SNR, distinct inclusions never reordered."""
    num = 4
    d = WeightShrinkage(map_value=torch.zeros(5), mean=torch.tensor([1.0, 2.0, 0.1, 0.0, 5.0]),
                        sd=torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0]), snr=torch.tensor([1.0, 2.0, 0.1, 0.0, math.inf]),
                        p_small=torch.tensor([0.0, 0.0, 0.25, 0.25, 0.5]), eps=0.1, num_draws=num)
    score = criterion_scores({"w": d})["inclusion"]["w"]
    assert score.argsort(descending=True).tolist() == [1, 0, 2, 3, 4]
    draws = {"w": torch.tensor([[0.0, 1.0], [0.0, 1.0]])}
    snr = weight_shrinkage(draws, {"w": torch.ones(2)}, ["w"])["w"].snr
    assert snr.tolist() == [0.0, math.inf]


# --------------------------------------------------------------------------- on a fitted classifier
@pytest.fixture(scope="module")
def fitted():
    """A small HALO network on the 8x8 digits: a short full-batch MAP fit, then fast SVI from it."""
    torch.manual_seed(0)
    data = load_dataset("digits", val_size=200)
    x, y = data.x_train.flatten(1), data.y_train
    module = BayesianModule(nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10)),
                            HALO(1e-3, 1e-3), n_data=len(y))
    optimizer = torch.optim.Adam([*module.network_parameters(), *module.hyper_parameters()], lr=0.02)
    for _ in range(150):
        optimizer.zero_grad()
        module.objective(x, y).backward()
        optimizer.step()
    map_values = module.site_values()
    result = fit_svi(module, x, y, epochs=4, batch_size=100, lr=0.01, init_scale=0.02, progress=False)
    return map_values, result, data.x_test.flatten(1), data.y_test


def test_diagnostics_of_a_fit_are_in_range(fitted):
    map_values, result, _, _ = fitted
    module = result.module
    draws = result.sample(30, seed=1)
    shrinkage = weight_shrinkage(draws, map_values, module.sites, module.prior)
    assert list(shrinkage) == ["0.weight", "2.weight"]
    for site, d in shrinkage.items():
        for value in (d.mean, d.sd, d.snr, d.p_small, d.coefficient.mean, d.coefficient.lower):
            assert value.shape == map_values[site].shape and torch.isfinite(value).all()
        assert (d.sd > 0).all() and (d.snr >= 0).all() and (d.coefficient.lower > 0).all()
        assert ((d.p_small >= 0) & (d.p_small <= 1)).all()
        assert (d.coefficient.lower <= d.coefficient.median).all() and (d.coefficient.median <= d.coefficient.upper).all()
    rows = layer_summary(shrinkage)
    assert [row["n_weights"] for row in rows] == [24 * 64, 10 * 24]
    assert all(0 <= row["mean_p_small"] <= 1 and row["median_coefficient"] > 0 for row in rows)


def test_compare_criteria_rows(fitted):
    map_values, result, x_test, y_test = fitted
    keeps = [1.0, 0.3, 0.05]
    rows = compare_criteria(map_values, result, x_test, y_test, keeps, num_samples=10, seed=4)
    assert [(row["keep"], row["criterion"]) for row in rows] == [(k, c) for k in keeps for c in CRITERIA]
    total = 24 * 64 + 10 * 24
    for row in rows:
        assert row["total_weights"] == total and row["kept_weights"] == keep_count(row["keep"], total)
        for key in ("accuracy_map_net", "accuracy_posterior_mean_net", "accuracy_predictive"):
            assert 0 <= row[key] <= 1
    unpruned = accuracy_of_predictions(result.predictive(x_test, num_samples=10, seed=4), y_test)
    dense = [row for row in rows if row["keep"] == 1.0]
    assert all(row["accuracy_predictive"] == unpruned for row in dense)
    assert unpruned > 0.85  # the fit is a real classifier, so pruning has something to lose
    assert min(row["accuracy_predictive"] for row in rows if row["keep"] == 0.05) < unpruned

    summary = best_criteria(rows)
    assert [s["keep"] for s in summary] == keeps
    assert summary[0]["best"] == CRITERIA and summary[0]["gain_over_map"] == 0  # keep = 1: all tie


def test_best_criteria_on_constructed_rows():
    rows = [{"keep": 0.1, "criterion": c, "accuracy_predictive": a}
            for c, a in zip(CRITERIA, [0.5, 0.7, 0.7, 0.6])]
    summary, = best_criteria(rows)
    assert summary["best"] == ("posterior-magnitude", "snr")
    assert summary["accuracy"] == 0.7 and summary["gain_over_map"] == pytest.approx(0.2)


def test_compare_criteria_needs_a_classifier(fitted):
    map_values, result, x_test, _ = fitted
    module = BayesianModule(nn.Linear(64, 1), HALO(1e-3, 1e-3), 10, likelihood=NormalLikelihood(1.0))
    regression = type(result)(result.guide, module)
    with pytest.raises(ConfigError, match="classifier"):
        compare_criteria(map_values, regression, x_test, torch.zeros(len(x_test)), [0.5])
