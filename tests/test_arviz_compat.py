"""The ArviZ-line module: which line is installed, its diagnostics against closed forms, files across lines.

``tests/data/posterior_arviz0.nc`` was written by ArviZ 0.23 (Python 3.11) and
``posterior_arviz1.nc`` by ArviZ 1.3 (Python 3.13), both from :func:`fixture_groups` with
``python tests/test_arviz_compat.py`` under each line; every line must read both.
"""
import sys
from pathlib import Path

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from bayes_halo.diagnostics import arviz_compat

DATA = Path(__file__).resolve().parent / "data"
FILES = {0: DATA / "posterior_arviz0.nc", 1: DATA / "posterior_arviz1.nc"}


def fixture_groups() -> dict[str, xr.Dataset]:
    """Small groups with dotted names, string coords, a bool variable, a summary group and attrs."""
    rng = np.random.default_rng(11)
    weight = rng.normal(size=(2, 10, 3, 2))
    posterior = xr.Dataset({"fc1.weight": (["chain", "draw", "fc1_out", "fc1_in"], weight),
                            "fc1.weight_lambda": (["chain", "draw", "fc1_out", "fc1_in"], np.exp(weight))},
                           coords={"chain": [0, 1], "draw": np.arange(10), "fc1_out": [0, 4, 9], "fc1_in": ["a", "b"]},
                           attrs={"inference": "mcmc"})
    stats = xr.Dataset({"diverging": (["chain", "draw"], rng.random((2, 10)) < 0.2)},
                       coords={"chain": [0, 1], "draw": np.arange(10)})
    summary = xr.Dataset({"fc1.weight": (["statistic", "fc1_out", "fc1_in"], rng.normal(size=(4, 3, 2)))},
                         coords={"statistic": ["mean", "sd", "q05", "q95"], "fc1_out": [0, 4, 9], "fc1_in": ["a", "b"]})
    return {"posterior": posterior, "sample_stats": stats, "posterior_summary": summary}


def test_the_arviz_line_follows_the_python_version():
    """pyproject.toml: ArviZ 0.23 below Python 3.12, ArviZ 1.x from 3.12 (it needs >= 3.12)."""
    assert arviz_compat.ARVIZ_1 == (sys.version_info >= (3, 12))
    assert az.__version__.startswith("1.3" if arviz_compat.ARVIZ_1 else "0.23")


@pytest.mark.parametrize("line", [0, 1])
def test_a_file_from_either_line_loads_with_groups_dims_coords_and_values(line):
    expected = fixture_groups()
    for result in (arviz_compat.load(FILES[line]), az.from_netcdf(FILES[line])):
        assert set(arviz_compat.group_names(result)) == set(expected)
        for name, want in expected.items():
            got = arviz_compat.group(result, name)
            assert set(got.data_vars) == set(want.data_vars)
            for var in want.data_vars:
                assert got[var].dims == want[var].dims
                np.testing.assert_array_equal(got[var].values, want[var].values)
            for dim in want.dims:
                np.testing.assert_array_equal(got[dim].values, want[dim].values)
        assert arviz_compat.group(result, "posterior").attrs["inference"] == "mcmc"
        assert arviz_compat.group(result, "sample_stats")["diverging"].dtype == bool


def test_save_then_load_round_trips(tmp_path):
    path = tmp_path / "r.nc"
    arviz_compat.save(arviz_compat.build(fixture_groups()), path)
    back = arviz_compat.group(arviz_compat.load(path), "posterior")
    np.testing.assert_array_equal(back["fc1.weight"].values, fixture_groups()["posterior"]["fc1.weight"].values)


def chains_result(chains: np.ndarray) -> object:
    """A result with one scalar variable ``x`` of draws ``(chain, draw)``."""
    return arviz_compat.build({"posterior": xr.Dataset({"x": (["chain", "draw"], chains)})})


def ar1(rng, rho: float, shape: tuple[int, int]) -> np.ndarray:
    """Stationary AR(1) chains x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t: ESS = n (1 - rho) / (1 + rho)."""
    x = np.empty(shape)
    x[:, 0] = rng.normal(size=shape[0])
    for t in range(1, shape[1]):
        x[:, t] = rho * x[:, t - 1] + np.sqrt(1 - rho**2) * rng.normal(size=shape[0])
    return x


def test_rhat_and_ess_against_closed_forms():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 1000))
    assert abs(float(arviz_compat.rhat(chains_result(iid))["x"]) - 1) < 0.01
    shifted = iid + np.array([0.0, 0.0, 3.0, 3.0])[:, None]  # two chains stuck 3 sd away
    assert float(arviz_compat.rhat(chains_result(shifted))["x"]) > 1.5
    assert 0.8 * 4000 < float(arviz_compat.ess(chains_result(iid))["x"]) < 1.2 * 4000
    correlated = ar1(rng, 0.8, (4, 4000))
    ess = float(arviz_compat.ess(chains_result(correlated))["x"])
    assert 0.75 < ess / (16000 * 0.2 / 1.8) < 1.33


def shortest_interval(draws: np.ndarray, prob: float) -> tuple[float, float]:
    """The narrowest interval holding ceil(prob * n) of the sorted draws."""
    ordered = np.sort(draws)
    width = int(np.ceil(prob * len(ordered)))
    start = int(np.argmin(ordered[width - 1:] - ordered[:len(ordered) - width + 1]))
    return ordered[start], ordered[start + width - 1]


def test_hdi_and_summary_against_numpy():
    rng = np.random.default_rng(1)
    draws = rng.gamma(2.0, size=(2, 2000))  # skewed: the HDI is not the central interval
    result = chains_result(draws)
    interval = arviz_compat.hdi(result, 0.9)["x"]
    assert interval.dims == ("ci_bound",) and list(interval.coords["ci_bound"].values) == ["lower", "upper"]
    lower, upper = shortest_interval(draws.ravel(), 0.9)
    gap = np.diff(np.sort(draws.ravel())).max()
    np.testing.assert_allclose(interval.values, [lower, upper], atol=gap)
    table = arviz_compat.summary(result, prob=0.9)
    assert list(table.columns) == ["mean", "sd", "hdi90_lb", "hdi90_ub", "mcse_mean", "mcse_sd", "ess_bulk",
                                   "ess_tail", "r_hat"]
    row = table.loc["x"]
    np.testing.assert_allclose([row["mean"], row["sd"]], [draws.mean(), draws.std(ddof=1)], rtol=1e-10)
    np.testing.assert_allclose([row["hdi90_lb"], row["hdi90_ub"]], interval.values, rtol=1e-10)
    np.testing.assert_allclose(row["mcse_mean"], draws.std(ddof=1) / np.sqrt(row["ess_bulk"]), rtol=0.05)


def test_forest_trace_and_rank_are_figures():
    rng = np.random.default_rng(2)
    result = arviz_compat.build({"posterior": xr.Dataset(
        {"w": (["chain", "draw", "in"], rng.normal(size=(2, 50, 3)))}, coords={"in": ["a", "b", "c"]})})
    other = arviz_compat.build({"posterior": xr.Dataset(
        {"w": (["chain", "draw", "in"], rng.normal(1, size=(2, 50, 3)))}, coords={"in": ["a", "b", "c"]})})
    for fig in (arviz_compat.plot_forest({"one": result, "two": other}, ["w"]),
                arviz_compat.plot_forest({"one": result}, ["w"], coords={"in": ["a"]}),
                arviz_compat.plot_trace(result, ["w"]), arviz_compat.plot_rank(result, ["w"])):
        assert isinstance(fig, Figure) and any(ax.has_data() for ax in fig.axes)
    plt.close("all")


if __name__ == "__main__":  # write this line's fixture file
    target = FILES[1 if arviz_compat.ARVIZ_1 else 0]
    arviz_compat.save(arviz_compat.build(fixture_groups()), target)
    print(f"wrote {target} with arviz {az.__version__}")
