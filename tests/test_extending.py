"""A prior, a data set and a model defined by user code reach both command lines through the registries."""
import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn
from torch.distributions import constraints

from bayes_halo.cli import fit, path
from bayes_halo.config.priors import DEFAULT_STRENGTHS, set_default_strengths
from bayes_halo.pipeline import load_run
from bayes_halo.data import TensorSplit, load_digits_tensors, register_dataset
from bayes_halo.data.registry import DATASETS
from bayes_halo.models import register_model
from bayes_halo.models.registry import MODELS
from bayes_halo.priors import PRIORS, HyperSite, Prior, hyper_site_name, register_prior
from bayes_halo.pruning import keep_count


class HalfBridge(Prior):
    r"""``lambda_j ~ Gamma(2, N psi)``, ``w_j | lambda_j ~ Laplace(0, lambda_j / (N xi))``.

    The Laplace normaliser ``N xi / (2 lambda_j)`` cancels the Gamma(2)'s ``lambda_j``, so
    ``R = xi sum |w_j| / lambda_j + psi sum lambda_j``; profiling lambda gives ``2 sqrt(xi psi |w|)``.
    """

    name = "test-half-bridge"
    strengths = ("xi", "psi")
    coefficient_of = "lambda"
    coefficient_criterion = "half-bridge-coefficient"

    def __init__(self, xi: float, psi: float) -> None:
        self.xi, self.psi = xi, psi

    def hyper_sites(self, site, weight):
        return {"lambda": HyperSite(weight.new_ones(weight.shape), constraints.positive)}

    def coefficient(self, lam):
        return self.xi / lam

    def penalty(self, site, weight, hyper, n_data):
        lam = hyper["lambda"]
        return self.xi * (weight.abs() / lam).sum() + self.psi * lam.sum()

    def sample(self, site, like, n_data):
        gamma = dist.Gamma(like.new_tensor(2.0), like.new_tensor(n_data * self.psi))
        lam = pyro.sample(hyper_site_name(site, "lambda"), gamma.expand(like.shape).to_event(like.dim()))
        return pyro.sample(site, dist.Laplace(like.new_zeros(()), lam / (n_data * self.xi)).to_event(like.dim()))


class TauLasso(Prior):
    r"""``w_j ~ Laplace(0, 1/(N tau))``: a strength with a name of its own, ``R = tau sum |w_j|``."""

    name = "test-tau-lasso"
    strengths = ("tau",)

    def __init__(self, tau: float) -> None:
        self.tau = tau

    def penalty(self, site, weight, hyper, n_data):
        return self.tau * weight.abs().sum()

    def sample(self, site, like, n_data):
        scale = like.new_full(like.shape, 1.0 / (n_data * self.tau))
        return pyro.sample(site, dist.Laplace(like.new_zeros(()), scale).to_event(like.dim()))


@pytest.fixture
def registered():
    """The user's priors (one with run defaults), data set and model, registered for one test and removed afterwards."""
    register_prior(HalfBridge)
    register_prior(TauLasso)
    set_default_strengths(HalfBridge.name, xi=1e-4, psi=1e-4)

    @register_dataset("test-small-digits")
    def small_digits(data_dir, download):
        split = load_digits_tensors()
        return TensorSplit(split.x_train[:600], split.y_train[:600], split.x_test, split.y_test, "first 600 digits")

    @register_model("test-mlp")
    def mlp(input_shape, n_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(), nn.Linear(32, n_classes))

    yield
    PRIORS.pop(HalfBridge.name)
    PRIORS.pop(TauLasso.name)
    DEFAULT_STRENGTHS.pop(HalfBridge.name)
    DATASETS.entries.pop("test-small-digits")
    MODELS.entries.pop("test-mlp")


def test_the_example_prior_is_its_penalty(float64):
    """The test prior itself obeys the contract: -log p = N * penalty + const at random points."""
    prior, n, g = HalfBridge(1e-3, 2e-3), 500, torch.Generator().manual_seed(1)
    values = []
    for _ in range(3):
        w, lam = torch.randn(3, 4, generator=g), torch.rand(3, 4, generator=g) + 0.1
        data = {"l.weight": w, "l.weight_lambda": lam}
        trace = poutine.trace(poutine.condition(prior.sample, data=data)).get_trace("l.weight", w, n)
        values.append(-trace.log_prob_sum() - n * prior.penalty("l.weight", w, {"lambda": lam}, n))
    assert torch.allclose(torch.stack(values), values[0].expand(3), atol=1e-8)


def test_user_prior_dataset_and_model_run_through_fit_and_path(registered, tmp_path, capsys):
    common = ["--dataset", "test-small-digits", "--model", "test-mlp", "--val-size", "100", "--epochs", "2",
              "--keep", "0.1", "--no-progress"]
    assert fit.main(["--prior", HalfBridge.name, *common, "--out", str(tmp_path / "fit")]) == 0
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert (metrics["prior"], metrics["xi"], metrics["psi"]) == (HalfBridge.name, 1e-4, 1e-4)  # declared defaults
    rows = {r["criterion"]: r for r in metrics["pruned"]}
    assert set(rows) == {"magnitude", "half-bridge-coefficient"}  # the declared capability is a criterion
    total = 64 * 32 + 32 * 10
    assert rows["half-bridge-coefficient"]["kept_weights"] == keep_count(0.1, total)
    assert metrics["n_train"] == 500 and "first 600 digits" in metrics["data_source"]

    assert path.main(["--prior", HalfBridge.name, *common, "--strengths", "1e-4", "1e-3", "--psi", "3e-4",
                      "--target-keep", "0.1", "--out", str(tmp_path / "path")]) == 0
    choice = json.loads((tmp_path / "path" / "choice.json").read_text())
    assert choice["prior"] == HalfBridge.name and choice["chosen"]["psi"] == 3e-4
    assert "chosen for 10% kept" in capsys.readouterr().out


def test_a_prior_with_a_strength_named_tau_runs_from_the_command_line(registered, tmp_path, capsys):
    """`--strength tau=...` reaches the prior's constructor; without it (no default) a one-line error, exit 2."""
    common = ["--prior", TauLasso.name, "--dataset", "test-small-digits", "--model", "test-mlp", "--val-size", "100",
              "--epochs", "1", "--keep", "0.1", "--no-progress"]
    assert fit.main([*common, "--strength", "tau=3e-4", "--out", str(tmp_path / "tau")]) == 0
    run = load_run(tmp_path / "tau")
    assert isinstance(run.module.prior, TauLasso) and run.module.prior.tau == 3e-4
    assert json.loads((tmp_path / "tau" / "config.json").read_text())["prior"]["strength"] == ["tau=0.0003"]
    capsys.readouterr()
    assert fit.main([*common, "--out", str(tmp_path / "none")]) == 2
    assert fit.main([*common, "--strength", "xi=1e-4", "--out", str(tmp_path / "xi")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2
    assert "needs tau (give --strength tau=VALUE)" in errors[0] and "--xi has a setting of its own" in errors[1]


def test_unregistered_names_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        fit.build_parser().parse_args(["--prior", HalfBridge.name])
    assert stop.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
