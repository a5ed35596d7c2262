"""``bayes_halo.path``: warm starts, sparsity along the path, the choice by validation, errors (8x8 digits)."""
import json
import subprocess
import sys

import pytest
import torch

from bayes_halo.cli.path import main
from bayes_halo.data import load_dataset
from bayes_halo.regpath import grid_edge, point_config, regularization_path, strength_grid
from bayes_halo.pipeline import build_module, train_module
from bayes_halo.pruning import keep_masks, magnitude_scores, pruned_copy
from bayes_halo.config.sections import RunConfig
from bayes_halo.training.evaluate import accuracy

QUICK = ["--dataset", "digits", "--val-size", "300", "--epochs", "2", "--keep", "0.1", "0.05", "--no-progress"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_size=300, seed=0)


def config(prior: str = "halo", **kw) -> RunConfig:
    return RunConfig.from_flat(prior=prior, dataset="digits", val_size=300, epochs=2, keep=(0.1, 0.05), **kw)


def build(settings: RunConfig, data):
    return build_module(settings, data.input_shape, data.n_classes, data.n_train)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_warm_start_carries_weights_and_lambdas(digits):
    """Point 2 of the path == training point 2's strengths from point 1's end state, rebuilt by hand."""
    base = config("halo", psi=1e-3)
    result = regularization_path(base, [1e-4, 1e-3], data=digits)
    first, second = point_config(base, 1e-4, "xi", None), point_config(base, 1e-3, "xi", None)
    assert (first.prior.xi, second.prior.xi, second.prior.psi) == (1e-4, 1e-3, 1e-3)
    by_hand = build(first, digits)
    train_module(first, by_hand, digits)
    assert_same_state(by_hand.state_dict(), result.states[0])
    lambdas = [v for k, v in by_hand.state_dict().items() if k.startswith("hyper_raw")]
    assert lambdas and not all(torch.equal(v, torch.ones_like(v)) for v in lambdas)  # lambda moved, is carried
    warm = build(second, digits)
    warm.load_state_dict(by_hand.state_dict())
    train_module(second, warm, digits)
    assert_same_state(warm.state_dict(), result.states[1])
    cold = build(second, digits)
    train_module(second, cold, digits)
    assert not torch.equal(cold.state_dict()["net.fc1.weight"], result.states[1]["net.fc1.weight"])


def test_sparsity_increases_along_the_path(digits):
    strengths = [1e-4, 1e-3, 1e-2]
    result = regularization_path(config("laplace"), strengths, data=digits)
    zeros = [r["near_zero"] for r in result.rows]
    assert zeros == sorted(zeros) and zeros[-1] > zeros[0] + 0.2
    for row, state in zip(result.rows, result.states):  # the recorded fraction, recounted from the state
        weights = [state[f"net.{name}.weight"] for name in ("fc1", "fc2", "fc3")]
        small = sum(int((w.abs() < 1e-3).sum()) for w in weights) / sum(w.numel() for w in weights)
        assert row["near_zero"] == pytest.approx(small)
    assert [r["cumulative_epochs"] for r in result.rows] == [2, 4, 6]
    assert all(r["psi"] is None for r in result.rows)


def test_target_keep_picks_the_best_validation_point(digits):
    base = config("halo", psi=1e-3)
    result = regularization_path(base, [1e-4, 1e-3, 1e-2], target_keep=0.02, data=digits)
    scores = [r["val_keep_0.02"] for r in result.rows]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    chosen = result.choice["chosen"]
    assert chosen["point"] == best + 1 and chosen["val_keep_0.02"] == max(scores)
    assert chosen["at_edge"] == {0: "weakest", 1: None, 2: "strongest"}[best]
    assert [r["point"] for r in result.rows if "test_at_target" in r] == [best + 1]  # test only where chosen
    module = build(point_config(base, [1e-4, 1e-3, 1e-2][best], "xi", None), digits)
    module.load_state_dict(result.states[best])
    masks = keep_masks(magnitude_scores({k: w.detach() for k, w in module.weights().items()}), 0.02)
    assert accuracy(pruned_copy(module.net, masks), digits.x_val, digits.y_val) == scores[best]
    assert accuracy(pruned_copy(module.net, masks), digits.x_test, digits.y_test) == chosen["test_at_target"]
    frontier = {f["keep"]: f for f in result.choice["frontier"]}
    assert set(frontier) == {0.1, 0.05, 0.02}
    assert frontier[0.1]["val_accuracy"] == max(r["val_keep_0.1"] for r in result.rows)


def test_ray_walk_and_grid():
    base = config("shared-halo")
    assert [point_config(base, s, "ray", 3.0).prior.psi for s in (1e-4, 2e-4)] == [pytest.approx(3e-4), pytest.approx(6e-4)]
    assert strength_grid(1e-5, 1e-3, 3) == [1e-5, 1e-4, 1e-3]


def test_cli_writes_outputs_with_refit(tmp_path, capsys):
    out = tmp_path / "path"
    status = main([*QUICK, "--prior", "adaptive-laplace", "--pilot-epochs", "1", "--strengths", "1e-5", "1e-4",
                   "--target-keep", "0.05", "--refit", "--refit-epochs", "2", "--out", str(out)])
    assert status == 0
    for name in ("path.csv", "path.png", "choice.json"):
        assert (out / name).stat().st_size > 0
    lines = (out / "path.csv").read_text().splitlines()
    assert lines[0].startswith("point,xi,psi,epochs,cumulative_epochs,val_dense,val_keep_0.1,val_keep_0.05,near_zero")
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "refit"]
    assert [line.split(",")[4] for line in lines[1:]] == ["3", "5", "3"]  # pilot epoch counted
    choice = json.loads((out / "choice.json").read_text())
    assert choice["target_keep"] == 0.05 and {"chosen", "refit", "frontier"} <= set(choice)
    printed = capsys.readouterr().out
    assert "chosen for 5% kept" in printed
    edge = choice["chosen"]["at_edge"]  # two points: whichever is chosen ends the path
    assert edge in ("weakest", "strongest") and f"note: the chosen point is the {edge} on the path" in printed


def test_grid_edge():
    assert [grid_edge(i, 4) for i in range(4)] == ["weakest", None, None, "strongest"]
    assert grid_edge(0, 1) is None


@pytest.mark.parametrize("extra, message", [
    (["--strengths", "1e-4", "1e-5"], "increase"),
    (["--strengths", "0", "1e-5"], "positive"),
    (["--prior", "laplace", "--walk", "ray", "--ratio", "2"], "no psi"),
    (["--walk", "ray"], "--ratio"),
    (["--walk", "ray", "--ratio", "2", "--psi", "1e-4"], "drop --psi"),
    (["--ratio", "2"], "--walk ray"),
    (["--target-keep", "1.5"], "--target-keep"),
    (["--refit"], "--target-keep"),
    (["--from", "1e-3", "--to", "1e-4"], "--from"),
    (["--strengths", "1e-4", "--from", "1e-5"], "either"),
    (["--prior", "none"], "invalid choice"),
    (["--epochs", "0"], "--epochs"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        status = main([*QUICK, "--out", str(tmp_path / "p"), *extra])
        raise SystemExit(status)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "p").exists()


def test_refuses_to_overwrite(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "choice.json").write_text("{}")
    assert main([*QUICK, "--out", str(tmp_path / "p")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_module_entry_point_help():
    done = subprocess.run([sys.executable, "-m", "bayes_halo.path", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    assert "per example" in done.stdout.lower().replace("\n", " ") and "--target-keep" in done.stdout
