"""The transformer study runner on tiny settings: exact counts and equal multiply-adds in every row."""
import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_runner():
    spec = importlib.util.spec_from_file_location("transformer_study", ROOT / "experiments" / "transformer_study" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_study_prunes_every_method_to_the_same_multiply_adds(tmp_path):
    runner = load_runner()
    assert runner.main(["--model", "char-transformer", "--out", str(tmp_path), "--seeds", "0", "1", "--epochs", "1",
                        "--subset", "16", "--batch-size", "8", "--grid", "5e-5:1e-4", "1e-3:1e-3",
                        "--calibration", "4"]) == 0
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    methods = {(r["method"], r["criterion"], r["finetune_epochs"]) for r in rows}
    assert methods == {("dense+one-shot", "magnitude", "0"), ("dense+one-shot", "magnitude", "1"),
                       ("dense+one-shot", "wanda", "0"), ("dense+one-shot", "wanda", "1"),
                       ("group-halo", "halo-coefficient", "0"), ("group-halo", "magnitude", "0")}
    assert {(r["heads_kept"], r["units_kept"]) for r in rows} == {("8", "256")}  # half of 16 heads, 512 units
    macs = {int(r["multiply_adds"]) for r in rows}
    dense = {int(r["multiply_adds_dense"]) for r in rows}
    assert len(macs) == 1 and len(dense) == 1 and macs.pop() < dense.pop()
    assert len([r for r in rows if r["method"] == "group-halo" and r["seed"] == "0"]) == 4  # both grid points
    summary = (tmp_path / "summary.md").read_text()
    assert "experiments/transformer_study/run.py --model char-transformer" in summary


def test_select_mean_trains_every_point_on_every_seed_and_a_rerun_resumes(tmp_path):
    runner = load_runner()
    args = ["--model", "char-transformer", "--out", str(tmp_path), "--seeds", "0", "1", "--epochs", "1",
            "--subset", "16", "--batch-size", "8", "--grid", "5e-5:1e-4", "1e-2:1e-2", "--calibration", "4",
            "--select", "mean"]
    assert runner.main(args) == 0
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    halo = [r for r in rows if r["method"] == "group-halo" and r["criterion"] == "halo-coefficient"]
    assert sorted((r["seed"], r["xi"]) for r in halo) == [("0", "0.01"), ("0", "5e-05"), ("1", "0.01"), ("1", "5e-05")]
    mean_val = {xi: sum(float(r["val"]) for r in halo if r["xi"] == xi) / 2 for xi in ("5e-05", "0.01")}
    best = min(mean_val, key=mean_val.get)  # bits per character: lower is better
    summary = (tmp_path / "summary.md").read_text()
    assert "mean over seeds 0, 1" in summary and f"{float(best):g}:" in summary.split("chosen on validation")[1][:80]
    assert runner.main(args) == 0  # every folder holds a finished checkpoint: re-evaluated, not retrained
    again = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [(r["seed"], r["xi"], r["val"], r["test"]) for r in again] == [(r["seed"], r["xi"], r["val"], r["test"])
                                                                          for r in rows]
