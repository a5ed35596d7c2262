"""``fit`` on a fake CIFAR-10 folder: the whole job on a CIFAR ResNet, conv-only pruning, exact resume with augmentation."""
import csv
import json

import pytest
import torch

from bayes_halo.cli.fit import main
from bayes_halo.models import build_model
from bayes_halo.pruning import keep_count
from bayes_halo.training import trainer
from fake_cifar import write_cifar10

# 5 x 60 fake training images, 50 test images; 256 of them used, 56 carved off for validation
QUICK = ["--dataset", "cifar10", "--model", "resnet20", "--subset", "256", "--val-size", "56", "--epochs", "1",
         "--batch-size", "50", "--prune-scope", "conv", "--keep", "0.3", "0.05", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root)
    return root


def test_fit_on_cifar_writes_everything_and_keeps_the_fraction_of_conv_weights(folder, tmp_path):
    out = tmp_path / "run"
    assert main([*QUICK, "--data-dir", str(folder), "--no-download", "--out", str(out)]) == 0
    for name in ("config.json", "metrics.json", "sparsity.csv", "model.pt", "checkpoint.pt", "accuracy_vs_keep.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    net = build_model("resnet20", (3, 32, 32), 10)
    conv = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Conv2d))  # independent count
    for row in metrics["pruned"]:
        assert row["total_weights"] == conv and row["kept_weights"] == keep_count(row["keep"], conv)
        assert row["scope"] == "conv"
    layers = {r["layer"] for r in csv.DictReader((out / "sparsity.csv").open())}
    assert layers and all(name.endswith(".weight") and "bn" not in name and "fc" not in name for name in layers)
    assert metrics["n_train"] == 200 and "cifar-10-batches-py" in metrics["data_source"]


def test_resume_with_augmentation_reaches_the_uninterrupted_result(folder, tmp_path, monkeypatch):
    args = [*QUICK, "--epochs", "3", "--data-dir", str(folder), "--no-download"]
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    real_save, saves = trainer.save_checkpoint, []

    def save_then_interrupt(path, state):
        real_save(path, state)
        saves.append(path)
        if len(saves) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_interrupt)
    assert main([*args, "--out", str(tmp_path / "resumed")]) == 130
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    assert main([*args, "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    a, b = (torch.load(tmp_path / n / "model.pt", weights_only=True)["module"] for n in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    no_aug = tmp_path / "no-aug"
    assert main([*args, "--no-augment", "--out", str(no_aug)]) == 0
    c = torch.load(no_aug / "model.pt", weights_only=True)["module"]
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the crops did change the training


def test_missing_cifar_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([*QUICK, "--data-dir", str(tmp_path), "--no-download", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cifar-10-batches-py" in err
