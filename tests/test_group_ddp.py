"""A structured prior (group HALO on LeNet-300-100's input units) on two gloo ranks equals one process.

Tolerances as in tests/test_distributed.py: the ranks sum the batch in two halves, so parameters
differ from one process by float32 rounding (one step: rtol 1e-5 / atol 1e-7; the 3-epoch run:
atol 1e-6), and an accuracy by at most one example.  Both ranks hold bit-identical parameters
and lambdas (the fused prior step runs on every rank from the same reduced gradient).
"""
import json

import pytest
import torch

from bayes_halo.config import RunConfig
from bayes_halo.data import load_dataset
from bayes_halo.pipeline import build_module, run_fit
from test_distributed import load_state, torchrun

GROUPED = {"device": "cpu", "keep": [0.1, 0.02], "prior": "halo", "groups": "unit", "dataset": "digits",
           "val_size": 200}
STEP = {**GROUPED, "subset": 299, "val_size": 100, "batch_size": 200, "epochs": 1}
SHORT = {**GROUPED, "epochs": 3}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("group_ddp")
    done = torchrun([{"config": STEP, "out": str(base / "step")}, {"config": SHORT, "out": str(base / "short")}],
                    base / "jobs.json")
    assert done.returncode == 0, done.stderr[-3000:]
    return base


def one_process(config, out):
    return run_fit(RunConfig.from_flat(**config), out, progress=False)


def test_ranks_agree_bit_for_bit(runs):
    for name in ("step", "short"):
        a, b = load_state(runs / name / "rank0.pt"), load_state(runs / name / "rank1.pt")
        assert a.keys() == b.keys() and "hyper_raw.fc1:inputs_lambda" in a
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_one_step_equals_one_process(runs, tmp_path):
    ddp = load_state(runs / "step" / "rank0.pt")
    single = one_process(STEP, tmp_path / "one").module.state_dict()
    data = load_dataset("digits", None, val_size=STEP["val_size"], download=False, subset=STEP["subset"])
    start = build_module(RunConfig.from_flat(**STEP), data.input_shape, data.n_classes, data.n_train).state_dict()
    for key, value in single.items():
        assert not torch.equal(value, start[key]), f"{key} did not move in the step"
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-7, msg=key)


def test_short_run_equals_one_process(runs, tmp_path):
    single = one_process(SHORT, tmp_path / "one")
    for key, value in single.module.state_dict().items():
        torch.testing.assert_close(load_state(runs / "short" / "rank0.pt")[key], value, rtol=0, atol=1e-6, msg=key)
    ddp = json.loads((runs / "short" / "metrics.json").read_text())
    assert ddp["groups"] == "unit"
    for split, n in (("val_accuracy", 200), ("test_accuracy", 360)):
        assert abs(ddp["dense"][split] - single.metrics["dense"][split]) <= 1 / n + 1e-12
        for row, ref in zip(ddp["pruned"], single.metrics["pruned"], strict=True):
            assert row["kept_weights"] == ref["kept_weights"]
            assert abs(row[split] - ref[split]) <= 1 / n + 1e-12
