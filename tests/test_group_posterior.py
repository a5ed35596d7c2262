"""SVI with group priors: the fast engine is Pyro's estimator, and the group-level posterior (item 7)."""
import json
import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_value

from bayes_halo.cli.fit import main
from bayes_halo.diagnostics.arviz_export import load_inference_data
from bayes_halo.diagnostics.group_posterior import group_inclusion_scores, group_shrinkage
from bayes_halo.groups import Grouping, along
from bayes_halo.inference.fast_svi import MeanFieldGaussian
from bayes_halo.inference.svi import SVIResult, fit_svi, predictive_probs
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.priors import GroupHALO, GroupHorseshoe, GroupLaplace
from tiny_models import small_net

N = 60


def grouped_module(prior):
    net = small_net()  # Linear(6, 5) -> Tanh -> Linear(5, 3)
    groupings = [Grouping("0:inputs", "input-unit", (along("0.weight", (5, 6), 1),)),
                 Grouping("2:inputs", "input-unit", (along("2.weight", (3, 5), 1),))]
    return BayesianModule(net, prior, N, groups=groupings)


def toy_data(n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=generator), torch.randint(0, 3, (n,), generator=generator)


@pytest.mark.parametrize("prior", [GroupLaplace(0.05), GroupHALO(0.05, 0.1), GroupHorseshoe(0.5)],
                         ids=lambda p: p.name)
def test_fast_negative_elbo_is_pyro_trace_elbo_with_common_noise(prior, float64):
    """As tests/test_svi.py for per-weight priors: same variational parameters and noise, the two
    engines' losses differ by exactly sum (1 - eps^2)/2."""
    module = grouped_module(prior)
    generator = torch.Generator().manual_seed(5)
    elbo = Trace_ELBO(max_plate_nesting=1)
    with pyro.settings.context(module_local_params=True):
        guide = AutoNormal(module.model, init_loc_fn=init_to_value(values=module.site_values()), init_scale=0.3)
        x, y = toy_data(12)
        guide(x, y)
        fast = MeanFieldGaussian(module)
        for trial in range(3):
            with torch.no_grad():
                for param in guide.parameters():
                    param.add_(0.3 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
            marginals = SVIResult(guide, module).marginals()
            fast.load_marginals(marginals)
            x, y = toy_data(12, seed=10 + trial)
            pyro.set_rng_seed(trial)
            pyro_loss = elbo.differentiable_loss(module.model, guide, x, y)
            pyro.set_rng_seed(trial)
            trace = pyro.poutine.trace(guide).get_trace(x, y)
            noise = {name: (trace.nodes[f"{name}_unconstrained"]["value"] - m.loc) / m.scale
                     for name, m in marginals.items()}
            correction = sum(0.5 * (1 - eps.pow(2)).sum() for eps in noise.values())
            torch.testing.assert_close(pyro_loss, fast.neg_elbo(x, y, noise) + correction, rtol=1e-10, atol=1e-8)


def test_predictive_at_zero_scale_is_the_network():
    module = grouped_module(GroupHALO(0.05, 0.1))
    x, y = toy_data(40)
    result = fit_svi(module, x, y, epochs=1, batch_size=40, lr=1e-12, init_scale=1e-12, progress=False)
    probs = result.predictive(x, num_samples=3)
    torch.testing.assert_close(probs, torch.softmax(module(x), dim=-1), rtol=1e-5, atol=1e-6)
    draws = result.sample(4, sites=["0:inputs", "2:inputs", "0.bias", "2.bias"])
    masks = {"0.weight": torch.zeros(5, 6)}  # a mask keyed by parameter name reaches the scattered draws
    torch.testing.assert_close(predictive_probs(module, draws, x, masks)[0],
                               torch.softmax(module.net[2](torch.tanh(module.net[0].bias.expand(1, 5))), -1)[0],
                               rtol=1e-5, atol=1e-6)


def test_group_shrinkage_against_direct_counts(float64):
    grouping = Grouping("g", "unit", (along("w", (4, 3), 0),))
    generator = torch.Generator().manual_seed(0)
    draws = torch.randn(50, 4, 3, generator=generator) * torch.tensor([0.01, 1.0, 0.02, 2.0]).reshape(1, 4, 1)
    map_value = torch.tensor([[0.0] * 3, [1.0] * 3, [0.0] * 3, [2.0] * 3])
    d = group_shrinkage({"g": draws}, {"g": map_value}, {"g": grouping})["g"]
    eps = 0.05 * math.sqrt((3 * 1.0 + 3 * 4.0) / 4)  # 5 % of the rms MAP group norm
    assert d.eps == pytest.approx(eps)
    for g in range(4):
        count = sum(1 for s in range(50) if math.sqrt(float((draws[s, g] ** 2).sum())) < eps)
        assert d.p_small[g].item() == pytest.approx(count / 50)
        assert d.mean[g].item() == pytest.approx(float(draws[:, g].norm(dim=1).mean()))
    assert d.p_small[0] > 0.9 and d.p_small[1] == 0.0
    torch.testing.assert_close(d.small.mean(0), d.p_small)
    per_weight = {"w": torch.full((4, 3), 7.0), "other": torch.ones(2)}
    scores = group_inclusion_scores({"g": d}, {"g": grouping}, per_weight)
    assert torch.equal(scores["other"], per_weight["other"])  # no grouping: per-weight score kept
    for g in range(4):
        assert torch.unique(scores["w"][g]).numel() == 1  # one score per group
    assert scores["w"][3, 0] > scores["w"][0, 0]


def test_fit_svi_with_groups_writes_group_inclusion(tmp_path):
    out = tmp_path / "run"
    assert main(["--dataset", "digits", "--val-size", "200", "--epochs", "2", "--keep", "0.2", "--no-progress",
                 "--prior", "halo", "--groups", "unit", "--svi", "--svi-epochs", "1", "--svi-samples", "5",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["prior"], metrics["groups"]) == ("halo", "unit")
    posterior = metrics["posterior"]
    assert [row["grouping"] for row in posterior["groups"]] == ["fc1:inputs", "fc2:inputs", "fc3:inputs"]
    assert [row["n_groups"] for row in posterior["groups"]] == [64, 300, 100]  # digits: 64 pixels
    assert "group-inclusion" in {row["criterion"] for row in posterior["pruning"]}
    idata = load_inference_data(out / "posterior.nc")
    small = idata["posterior"]["fc2:inputs_small"].values  # every draw kept: (chain, draw, group)
    norms = idata["posterior"]["fc2:inputs_norm"].values
    assert small.shape == norms.shape == (1, 5, 300)
    summary = idata["posterior_summary"]["fc2:inputs_small"].sel(statistic="mean").values
    assert summary == pytest.approx(small[0].mean(0))  # P(||w_g|| < eps | data) per group
    expected_small = sum(summary)
    assert posterior["groups"][1]["expected_small"] == pytest.approx(expected_small, abs=1e-5)
    forests = sorted(path.name for path in out.glob("posterior_forest_*.png"))
    assert "posterior_forest_fc2-inputs.png" in forests and not any(":" in name for name in forests)


def test_nuts_refuses_group_priors_in_one_line():
    from bayes_halo.errors import ConfigError
    from bayes_halo.inference.nuts import run_nuts
    with pytest.raises(ConfigError, match="NUTS does not support group priors"):
        run_nuts(grouped_module(GroupHALO(0.05, 0.1)), *toy_data(10), num_samples=2, warmup=2, progress=False)
