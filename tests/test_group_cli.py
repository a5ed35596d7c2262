"""--groups through the command lines: fit, path and the pruning-study runner, on the 8x8 digits."""
import csv
import json
import subprocess
import sys

import pytest
import torch

from bayes_halo.cli.fit import main as fit_main
from bayes_halo.config import RunConfig
from bayes_halo.data import load_dataset
from bayes_halo.pipeline import build_module, load_run
from bayes_halo.regpath import regularization_path
from test_pruning_study import run_study

QUICK = ["--dataset", "digits", "--val-size", "200", "--epochs", "2", "--keep", "0.2", "0.05", "--no-progress"]


@pytest.mark.parametrize("prior", ["halo", "laplace", "adaptive-laplace"])
def test_fit_prior_with_groups_trains_the_group_prior(prior, tmp_path):
    out = tmp_path / prior
    extra = ["--pilot-epochs", "1"] if prior == "adaptive-laplace" else []
    assert fit_main(["--prior", prior, "--groups", "unit", *QUICK, *extra, "--out", str(out)]) == 0
    run = load_run(out)
    assert type(run.module.prior).__name__ == {"halo": "GroupHALO", "laplace": "GroupLaplace",
                                               "adaptive-laplace": "GroupAdaptiveLaplace"}[prior]
    assert run.module.sites == ("fc1:inputs", "fc2:inputs", "fc3:inputs")
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["prior"], metrics["groups"]) == (prior, "unit")
    assert metrics["dense"]["test_accuracy"] > 0.5
    # the saved model's penalty is the group penalty of its weights (an independent formula for group HALO)
    if prior == "halo":
        xi, psi = run.config.prior.xi, run.config.prior.psi
        expected = 0.0
        for site in run.module.sites:
            norms = run.module.site_value(site).detach().double().pow(2).sum(1).sqrt()
            lam = run.module.hyper(site)["lambda"].detach().double()
            expected += float((xi * norms / lam**2).sum() + psi * lam.sum())
        assert run.module.penalty().item() == pytest.approx(expected, rel=1e-5)


def test_default_groups_keep_the_per_weight_prior():
    config = RunConfig.from_flat(dataset="digits", val_size=200)
    assert (config.prior.groups, config.prior.prior_name) == ("weight", "halo")
    data = load_dataset("digits", val_size=200)
    module = build_module(config, data.input_shape, data.n_classes, data.n_train)
    assert module.groupings == {} and module.sites == ("fc1.weight", "fc2.weight", "fc3.weight")


def test_size_power_reaches_the_group_prior_through_strength():
    """``--strength size_power=P``: the run's group HALO prices each group at d^P times its penalty."""
    config = RunConfig.from_flat(dataset="digits", val_size=200, prior="halo", groups="unit", xi=1e-3, psi=2e-3,
                                 strength=("size_power=0.5",))
    data = load_dataset("digits", val_size=200)
    module = build_module(config, data.input_shape, data.n_classes, data.n_train)
    assert module.prior.size_power == 0.5
    expected = 0.0
    for site in module.sites:
        matrix = module.site_value(site).detach().double()
        lam = module.hyper(site)["lambda"].detach().double()
        expected += matrix.shape[1] ** 0.5 * float((1e-3 * matrix.pow(2).sum(1).sqrt() / lam**2).sum() + 2e-3 * lam.sum())
    assert module.penalty().item() == pytest.approx(expected, rel=1e-5)
    assert RunConfig.from_flat(prior="halo", groups="unit").prior.strengths()["size_power"] == 0.0


@pytest.mark.parametrize("argv, message", [
    (["--prior", "halo", "--strength", "size_power=0.5"], "prior 'halo' takes no size_power"),
    (["--prior", "ridge", "--groups", "unit"], "no group version"),
    (["--groups", "channels"], "invalid choice"),
    (["--prior", "halo", "--groups", "unit", "--lambda-decay", "1e-4"], "takes no --lambda-decay"),
    (["--groups", "bn-scale"], "BatchNorm"),
])
def test_bad_group_settings_are_one_line_errors(argv, message, tmp_path, capsys):
    assert fit_main([*argv, *QUICK, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_help_lists_the_structures():
    done = subprocess.run([sys.executable, "-m", "bayes_halo.fit", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert "--groups {weight,unit,out-unit,bn-scale}" in done.stdout


def test_path_with_groups_warm_starts_the_group_lambdas():
    config = RunConfig.from_flat(prior="halo", groups="unit", dataset="digits", val_size=200, epochs=1, keep=(0.1,))
    result = regularization_path(config, [1e-4, 1e-3])
    assert result.choice["groups"] == "unit"
    lam = result.states[0]["hyper_raw.fc2:inputs_lambda"]
    assert lam.shape == (300,) and not torch.equal(lam, torch.ones_like(lam))


def test_study_runner_runs_a_group_method(tmp_path):
    study = {"study": "tiny-groups", "model": "lenet300", "dataset": "digits", "epochs": 2, "seeds": [0],
             "keep": [0.2], "focus": "group-halo", "common": {"val_size": 200},
             "methods": {"halo": {"prior": "halo"}, "group-halo": {"prior": "halo", "groups": "unit"}}}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    run_study(path, tmp_path / "out")
    with (tmp_path / "out" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["method"], r["prior"]) for r in rows} == {("halo", "halo"), ("group-halo", "group-halo")}
