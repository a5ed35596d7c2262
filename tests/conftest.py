"""Shared test settings: headless plotting, passive OpenMP threads and fixed seeds."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: suits a shared machine (docs/guide/speed.md)

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pyro  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# Small models run as fast on one thread, and one thread never thrashes when the machine is shared.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    yield


@pytest.fixture
def float64():
    """Run a test in double precision (float32 rounding alone breaks 1e-5 comparisons)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
