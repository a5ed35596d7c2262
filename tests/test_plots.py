"""Every plot runs on small inputs, labels its axes, and writes a real PNG atomically."""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from bayes_halo.diagnostics import plots
from bayes_halo.diagnostics.arviz_export import mcmc_inference_data
from bayes_halo.errors import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)
SHAPES = {"fc1.weight": (4, 6), "fc2.weight": (3, 4)}


def layer_draws(scale):
    return {site: RNG.normal(0, scale, (50, *shape)) for site, shape in SHAPES.items()}


def mcmc_idata():
    return mcmc_inference_data({"weight": torch.randn(2, 40, 1, 3), "weight_lambda": torch.rand(2, 40, 1, 3) + 0.1},
                               diverging=torch.zeros(2, 40))


def make(name, path):
    """Each plot function with small inputs, writing to ``path``."""
    map_values = {s: RNG.normal(0, 0.5, shape) for s, shape in SHAPES.items()}
    calls = {
        "coefficient_forest": lambda: plots.plot_coefficient_forest(
            {"SVI": RNG.normal(size=(50, 5)), "NUTS": RNG.normal(size=(50, 5))}, list("abcde"),
            map_value=np.zeros(5), path=path),
        "layer_shrinkage": lambda: plots.plot_layer_shrinkage(
            {"SVI": layer_draws(0.3), "NUTS": layer_draws(0.4)}, map_values, path=path),
        "map_vs_posterior": lambda: plots.plot_map_vs_posterior(
            map_values, {s: 0.8 * v for s, v in map_values.items()},
            {s: np.abs(v) > 0.3 for s, v in map_values.items()}, path=path),
        "hyper_histograms": lambda: plots.plot_hyper_histograms(
            {s: torch.rand(shape) + 0.01 for s, shape in SHAPES.items()}, xlabel="xi / lambda^2", path=path),
        "accuracy_vs_keep": lambda: plots.plot_accuracy_vs_keep(
            [{"keep": k, "criterion": c, "test_accuracy": 0.9 - 0.1 * (c == "magnitude") * (1 - k)}
             for k in (0.01, 0.1, 1.0) for c in ("magnitude", "snr")], dense_accuracy=0.9, path=path),
        "trace": lambda: plots.plot_mcmc(mcmc_idata(), ["weight", "weight_lambda"], path=path),
        "rank": lambda: plots.plot_mcmc(mcmc_idata(), ["weight"], kind="rank", path=path),
    }
    return calls[name]()


NAMES = ["coefficient_forest", "layer_shrinkage", "map_vs_posterior", "hyper_histograms", "accuracy_vs_keep",
         "trace", "rank"]


@pytest.mark.parametrize("name", NAMES)
def test_plot_returns_labelled_figure_and_writes_png(name, tmp_path):
    path = tmp_path / f"{name}.png"
    fig = make(name, path)
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]
    assert axes
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: unlabelled axes"
    assert any(ax.get_title() for ax in axes) or fig.get_suptitle()
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # written atomically, no temp file left


def test_plot_without_path_writes_nothing(tmp_path):
    fig = plots.plot_hyper_histograms({"w": np.array([0.1, 1.0, 10.0])})
    assert isinstance(fig, Figure) and list(tmp_path.iterdir()) == []


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="positive"):
        plots.plot_hyper_histograms({"w": np.array([0.0, 1.0])})
    with pytest.raises(ConfigError, match="labels"):
        plots.plot_coefficient_forest({"NUTS": np.zeros((5, 3))}, ["a", "b"])
    with pytest.raises(ConfigError, match="kind"):
        plots.plot_mcmc(mcmc_idata(), ["weight"], kind="pairs")
