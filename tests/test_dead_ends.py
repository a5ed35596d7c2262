"""From one command to the next without a dead end (8x8 digits, seconds): path -> export, fit --svi ->
export by a posterior criterion, and the one-line errors and warnings between steps."""
import csv
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from bayes_halo.cli import export as export_cli
from bayes_halo.cli import fit as fit_cli
from bayes_halo.cli import path as path_cli
from bayes_halo.data import load_dataset
from bayes_halo.pipeline import load_run
from bayes_halo.pruning import keep_masks, pruned_copy
from bayes_halo.pruning.sweep import pruning_criteria
from bayes_halo.training.evaluate import split_score

DIGITS = ["--dataset", "digits", "--val-size", "200", "--no-progress"]


def one_line(capsys, status: int, *patterns: str) -> str:
    """The one stderr line of a refused command (exit 2), holding every pattern."""
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for pattern in patterns:
        assert pattern in err, err
    return err


@pytest.fixture(scope="module")
def path_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("path") / "p"
    status = path_cli.main([*DIGITS, "--epochs", "2", "--keep", "0.2", "--prior", "laplace", "--strengths", "1e-5",
                            "1e-4", "--target-keep", "0.1", "--refit", "--refit-epochs", "2", "--out", str(out)])
    assert status == 0
    return out


@pytest.mark.parametrize("folder, key", [("chosen", "chosen"), ("refit", "refit")])
def test_path_writes_runs_that_load_and_export(path_run, folder, key, tmp_path, capsys):
    """load_run and export work on the path's folders; the pruned test accuracy matches choice.json's."""
    choice = json.loads((path_run / "choice.json").read_text())
    run = load_run(path_run / folder)
    assert run.config.prior.xi == choice[key]["xi"]
    data = load_dataset("digits", val_size=200, seed=0)
    masks = keep_masks(pruning_criteria(run.module)["magnitude"], 0.1)
    assert split_score(pruned_copy(run.module.net, masks), data, "test") == pytest.approx(
        choice[key]["test_at_target"], abs=1e-12)
    assert export_cli.main([str(path_run / folder), "--keep", "0.1", "--out", str(tmp_path / "small.pt")]) == 0
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["test"]["export_accuracy"] == pytest.approx(choice[key]["test_at_target"], abs=1e-12)
    assert report["test"]["predictions_differ"] == 0


def test_path_says_how_to_export(path_run, tmp_path, capsys):
    status = path_cli.main([*DIGITS, "--epochs", "1", "--prior", "laplace", "--strengths", "1e-5",
                            "--target-keep", "0.1", "--out", str(tmp_path / "p")])
    assert status == 0
    assert f"python -m bayes_halo.export {tmp_path / 'p' / 'chosen'} --keep 0.1" in capsys.readouterr().out
    assert not (tmp_path / "p" / "refit").exists()


@pytest.fixture(scope="module")
def svi_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("svi") / "run"
    status = fit_cli.main([*DIGITS, "--epochs", "2", "--svi", "--svi-epochs", "1", "--keep", "0.2", "0.1",
                           "--out", str(out)])
    assert status == 0
    return out


@pytest.mark.parametrize("criterion", ["snr", "inclusion", "posterior-magnitude", "map-magnitude"])
def test_export_by_a_posterior_criterion_matches_the_runs_comparison(svi_run, criterion, tmp_path):
    """The exported network at keep K by a posterior criterion has the accuracy that fit's comparison
    (compare_criteria: the MAP network pruned by that criterion) recorded in metrics.json."""
    metrics = json.loads((svi_run / "metrics.json").read_text())
    for keep in (0.2, 0.1):
        out = tmp_path / f"{keep}.pt"
        assert export_cli.main([str(svi_run), "--keep", str(keep), "--criterion", criterion, "--out", str(out)]) == 0
        report = json.loads((tmp_path / "export.json").read_text())
        row = next(r for r in metrics["posterior"]["pruning"] if r["criterion"] == criterion and r["keep"] == keep)
        assert report["test"]["masked_accuracy"] == pytest.approx(row["accuracy_map_net"], abs=1e-12)
        assert report["nonzero_before"] == row["kept_weights"]


def test_a_keep_that_empties_a_layer_is_refused_before_writing(svi_run, tmp_path, capsys):
    status = export_cli.main([str(svi_run), "--keep", "0.0001", "--out", str(tmp_path / "s.pt")])
    one_line(capsys, status, "leaves no weight in", "raise --keep")
    assert list(tmp_path.iterdir()) == []


def test_posterior_criteria_need_a_posterior(tmp_path, capsys):
    run = tmp_path / "run"
    assert fit_cli.main([*DIGITS, "--epochs", "1", "--keep", "0.2", "--out", str(run)]) == 0
    capsys.readouterr()
    status = export_cli.main([str(run), "--keep", "0.2", "--criterion", "snr", "--out", str(tmp_path / "s.pt")])
    one_line(capsys, status, "magnitude, halo-coefficient", "--svi")
    assert not (tmp_path / "s.pt").exists()


def test_missing_onnx_names_the_extra_and_writes_nothing(svi_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now fails as if it were not installed
    status = export_cli.main([str(svi_run), "--keep", "0.2", "--out", str(tmp_path / "s.pt"), "--onnx"])
    one_line(capsys, status, "pip install 'bayes_halo[onnx]'")
    assert list(tmp_path.iterdir()) == []


def test_missing_submitit_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "experiments" / "pruning_study"))
    study_run = importlib.import_module("run")

    monkeypatch.setitem(sys.modules, "submitit", None)
    monkeypatch.setattr(sys, "argv", ["run.py", "missing.json", "--executor", "submitit", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit) as stop:
        study_run.main()
    one_line(capsys, stop.value.code, "pip install 'bayes_halo[study]'")
    assert not (tmp_path / "r").exists()


def test_resume_with_nothing_to_resume_is_an_error(tmp_path, capsys):
    out = tmp_path / "empty"
    status = fit_cli.main([*DIGITS, "--epochs", "1", "--out", str(out), "--resume"])
    one_line(capsys, status, "nothing to resume", "drop --resume")
    assert not out.exists()


def test_refused_resume_lists_saved_and_new_values(tmp_path, capsys):
    out = tmp_path / "run"
    assert fit_cli.main([*DIGITS, "--epochs", "1", "--keep", "0.2", "--out", str(out)]) == 0
    capsys.readouterr()
    status = fit_cli.main([*DIGITS, "--epochs", "1", "--keep", "0.2", "--out", str(out), "--resume",
                           "--lr", "0.05", "--lr-milestones", "0.6"])
    one_line(capsys, status, "--lr 0.1 -> 0.05", "--lr-milestones 0.5 0.75 -> 0.6", "saved -> now")


@pytest.mark.parametrize("main", [fit_cli.main, path_cli.main])
def test_no_flag_abbreviations(main, capsys):
    one_line(capsys, main(["--prio", "halo"]), "unrecognized arguments: --prio")


def test_no_flag_abbreviations_in_export(capsys):
    one_line(capsys, export_cli.main(["some/run", "--kee", "0.1"]), "--keep")


def test_config_error_names_the_file_and_the_closest_key(tmp_path, capsys):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"train": {"lr_gama": 0.5}}))
    status = fit_cli.main([*DIGITS, "--config", str(config), "--out", str(tmp_path / "run")])
    one_line(capsys, status, str(config), "'lr_gama'", "did you mean 'lr_gamma'?")
    assert not (tmp_path / "run").exists()


def test_a_keep_fraction_that_starves_a_layer_warns_in_one_line(tmp_path, capsys):
    """--keep 0.0001 keeps 5 of 50,200 weights: the warning names exactly the layers left with fewer
    weights than the 10 classes, read back from sparsity.csv."""
    out = tmp_path / "run"
    assert fit_cli.main([*DIGITS, "--epochs", "1", "--prior", "laplace", "--keep", "0.5", "0.0001",
                         "--out", str(out)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "keeping 0.01%" in warnings[0]
    rows = list(csv.DictReader((out / "sparsity.csv").open()))
    thin = {r["layer"] for r in rows if float(r["keep"]) == 0.0001 and int(r["kept"]) < 10}
    fine = {r["layer"] for r in rows if float(r["keep"]) == 0.0001} - thin
    assert thin and all(f"{layer} (" in warnings[0] for layer in thin)
    assert not any(f"{layer} (" in warnings[0] for layer in fine)
