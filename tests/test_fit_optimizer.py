"""``--optimizer``: the fast path's AdamW against torch.optim.AdamW with the prior attached (a second code path)."""
import pytest
import torch

from bayes_halo.cli import fit as fit_cli
from bayes_halo.config import RunConfig, TrainConfig
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.pipeline import run_fit
from bayes_halo.training import trainer
from bayes_halo.training.adamw import PriorAdamW
from test_dead_ends import DIGITS, one_line
from tiny_models import make_prior, small_net

FLAT = {"dataset": "digits", "val_size": 200, "subset": 600, "epochs": 2, "batch_size": 50, "keep": (0.5,),
        "device": "cpu", "optimizer": "adamw", "lr": 3e-3, "lambda_lr": 1e-2, "weight_decay": 0.05,
        "lr_milestones": (0.5,)}


def test_config_builds_adamw_with_its_settings():
    config = TrainConfig(optimizer="adamw", lr=2e-3, lambda_lr=5e-3, weight_decay=0.01)
    plain = trainer.build_optimizer(BayesianModule(small_net(), None, 10), config)
    assert type(plain) is torch.optim.AdamW and plain.param_groups[0]["weight_decay"] == 0.01
    net = small_net()
    fused = trainer.build_optimizer(BayesianModule(net, make_prior("halo", net), 10), config)
    assert isinstance(fused, PriorAdamW)
    assert [(g["lr"], g["weight_decay"]) for g in fused.param_groups] == [(2e-3, 0.01), (5e-3, 0.0)]


@pytest.mark.parametrize("prior,groups", [("halo", "weight"), ("halo", "unit"), ("none", "weight")])
def test_fit_with_adamw_equals_torch_adamw_with_the_prior_attached(prior, groups, tmp_path, monkeypatch):
    """The run's fused PriorAdamW == torch.optim.AdamW + ``attach_optimizer(..., "coupled")`` in the same loop."""
    config = RunConfig.from_flat(**FLAT, prior=prior, groups=groups, seed=3)
    fused = run_fit(config, tmp_path / "fused", progress=False).module

    def torch_adamw(module, settings, n_steps=None):
        optimizer = torch.optim.AdamW(module.network_parameters(), lr=settings.lr,
                                      weight_decay=settings.weight_decay)
        if module.prior is not None:
            module.attach_optimizer(optimizer, "coupled", "optimizer", hyper_lr=settings.hyper_lr)
        return optimizer

    monkeypatch.setattr(trainer, "build_optimizer", torch_adamw)
    reference = run_fit(config, tmp_path / "torch", progress=False).module
    a, b = fused.state_dict(), reference.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_unknown_optimizer_is_one_line_exit_2(tmp_path, capsys):
    status = fit_cli.main([*DIGITS, "--optimizer", "adam", "--out", str(tmp_path / "r")])
    one_line(capsys, status, "adam")


def test_interrupted_adamw_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    config = RunConfig.from_flat(**FLAT, prior="halo", groups="unit", seed=1)
    straight = run_fit(config, tmp_path / "straight", progress=False).module.state_dict()
    real_save = trainer.save_checkpoint

    def save_then_interrupt(path, state):
        real_save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_fit(config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    resumed = run_fit(config, tmp_path / "resumed", resume=True, progress=False).module.state_dict()
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
