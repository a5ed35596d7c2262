"""The run config: declared once, derived into both command lines, round-tripped through config.json."""
import dataclasses
import json
from pathlib import Path

import pytest

from bayes_halo.cli import fit, path
from bayes_halo.config.sections import SECTIONS, PosteriorConfig, RunConfig
from bayes_halo.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--dataset", "digits", "--val-size", "200", "--epochs", "2", "--keep", "0.1", "--no-progress"]


def declared():
    """(flag, declared default) of every setting of a run, read from the dataclass fields."""
    out = {}
    for cls in (*SECTIONS.values(), RunConfig):
        for f in dataclasses.fields(cls):
            if "help" in f.metadata:
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                out[f.name] = (f.metadata.get("flag") or "--" + f.name.replace("_", "-"), default)
    return out


def option(parser, flag):
    return next(a for a in parser._actions if flag in a.option_strings)


def test_every_setting_is_a_flag_of_both_commands_with_its_declared_default():
    fit_parser, path_parser = fit.build_parser(), path.build_parser()
    posterior = {f.name for f in dataclasses.fields(PosteriorConfig)}
    for name, (flag, default) in declared().items():
        help_text = option(fit_parser, flag).help
        if default not in (None, (), True, False):
            shown = " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in
                             (default if isinstance(default, tuple) else (default,)))
            assert f"(default: {shown})" in help_text, name
        if name not in posterior and name != "xi":  # a path walks xi and runs no posterior
            assert option(path_parser, flag).help.split(" (default")[0] == help_text.split(" (default")[0], name
    # what the old path command lacked, and a default it changes on purpose
    for flag in ("--prune-scope", "--prune-by", "--include-bias", "--exclude", "--weight-decay"):
        option(path_parser, flag)
    assert "(default: 5)" in option(path_parser, "--epochs").help


def test_flat_and_nested_forms_and_the_priors_own_defaults():
    config = RunConfig.from_flat(prior="laplace", epochs=3, keep=[0.5])
    assert (config.prior.xi, config.prior.psi, config.train.epochs, config.prune.keep) == (1e-4, None, 3, (0.5,))
    assert RunConfig.from_dict(config.to_dict()) == config
    assert RunConfig.from_dict(json.loads(json.dumps(config.flat()))) == config
    assert config.replace(prior="halo").prior.psi == 1e-4  # strengths follow the prior they belong to
    with pytest.raises(ConfigError, match="`lr` must be a positive number"):
        RunConfig.from_flat(lr=-1.0)
    with pytest.raises(ConfigError, match="takes no `psi`"):
        RunConfig.from_flat(prior="laplace", psi=1e-3)
    with pytest.raises(ConfigError, match="unknown setting"):
        RunConfig.from_flat(learning_rate=0.1)


def test_the_committed_flat_config_of_version_0_1_loads_with_every_value():
    saved = json.loads((ROOT / "experiments/results/lenet5-caffe-budget/halo-xi1e-5-psi3e-4-30ep/config.json").read_text())
    assert "train" not in saved  # written by bayes_halo 0.1: one key per setting
    config = RunConfig.from_dict(saved)
    flat = config.flat()
    for key, value in saved.items():
        if key != "version":
            assert flat[key] == (tuple(value) if isinstance(value, list) else value), key


def test_config_file_then_flags(tmp_path):
    settings = tmp_path / "run.json"
    settings.write_text(json.dumps({"prior": "laplace", "xi": 3e-4, "epochs": 1}))
    assert fit.main([*QUICK, "--config", str(settings), "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (first["prior"]["prior"], first["prior"]["xi"], first["train"]["epochs"]) == ("laplace", 3e-4, 2)
    # a run's own config.json is a config file: the same run again, one flag changed
    assert fit.main(["--config", str(tmp_path / "a" / "config.json"), "--seed", "1", "--no-progress",
                     "--out", str(tmp_path / "b")]) == 0
    second = json.loads((tmp_path / "b" / "config.json").read_text())
    assert second["seed"] == 1 and {k: v for k, v in second.items() if k != "seed"} == \
        {k: v for k, v in first.items() if k != "seed"}


@pytest.mark.parametrize("args, message", [
    (["--svi", "--prior", "none"], "--svi needs a prior"),
    (["--config", "missing.json"], "config file missing.json does not exist"),
    (["--lr-milestones", "0.5", "1.5"], "--lr-milestones must be"),
])
def test_refused_before_any_training(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert fit.main([*QUICK, "--out", str(tmp_path / "never"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "never").exists()


def test_out_naming_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    for main in (fit.main, path.main):
        assert main([*QUICK, "--out", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is not a folder" in err


def test_a_recipe_then_the_flags():
    from bayes_halo.cli.options import run_config
    from bayes_halo.config.recipes import RECIPES

    parser = fit.build_parser()
    config = run_config(parser.parse_args(["--recipe", "paper-cifar", "--epochs", "2"]), RunConfig())
    recipe = RECIPES["paper-cifar"]
    flat = config.flat()
    for key, value in recipe.settings.items():
        if key != "epochs":
            assert flat[key] == value, key
    assert flat["epochs"] == 2 and flat["lambda_decay"] == 1e-4  # a flag wins; HALO gets its lambda decay
    assert run_config(parser.parse_args(["--recipe", "paper-cifar", "--prior", "laplace"]), RunConfig()).prior.lambda_decay is None
    assert run_config(parser.parse_args(["--recipe", "paper-cifar", "--lambda-decay", "0"]),
                      RunConfig()).prior.lambda_decay == 0.0
