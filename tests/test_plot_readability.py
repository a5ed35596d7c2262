"""Plots a reader understands at a glance: every keep fraction and path point labelled, no overlapping
tick labels, legends that match what is drawn, curves that do not hide each other; SVI summaries
without the MCMC-only columns; the per-layer shrinkage table of ``fit --svi``."""
import logging
import math

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from bayes_halo.diagnostics import arviz_compat, plots
from bayes_halo.diagnostics.arviz_export import mcmc_inference_data, posterior_summary, svi_inference_data
from bayes_halo.diagnostics.posterior_report import format_posterior
from bayes_halo.pruning.plot import plot_accuracy_vs_keep
from bayes_halo.regpath import plot_path

KEEPS = (0.1, 0.05, 0.02, 0.01)


def tick_labels(ax):
    """The x tick labels a reader sees (drawn, non-empty), after a draw."""
    FigureCanvasAgg(ax.figure).draw()
    return [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


def assert_no_overlap(labels):
    boxes = [t.get_window_extent() for t in labels]
    for a, b in zip(boxes, boxes[1:]):
        assert not a.overlaps(b), (a, b)


def test_accuracy_vs_keep_labels_every_keep_fraction_and_nothing_else():
    rows = [{"keep": k, "criterion": c, "test_accuracy": 0.95}
            for k in KEEPS for c in ("magnitude", "snr", "inclusion")]
    ax = plot_accuracy_vs_keep(rows, dense_accuracy=0.97).axes[0]
    labels = tick_labels(ax)
    assert [t.get_text() for t in labels] == ["1%", "2%", "5%", "10%"]
    assert_no_overlap(labels)
    curves = [line for line in ax.get_lines() if line.get_label() in ("magnitude", "snr", "inclusion")]
    # equal accuracies everywhere: each curve still has its own marker, style and x positions
    assert len({(c.get_marker(), c.get_linestyle()) for c in curves}) == 3
    xs = [tuple(c.get_xdata()) for c in curves]
    assert len(set(xs)) == 3
    for x in xs:  # dodged by a few percent only, so each point stays above its labelled tick
        assert all(abs(math.log(a / k)) < math.log(1.1) for a, k in zip(x, sorted(KEEPS)))


def test_path_plot_has_one_non_overlapping_label_per_point():
    xi = [1e-5, 1.5e-5, 2e-5, 3e-5, 5e-5, 8e-5, 1.2e-4]
    rows = [{"point": i + 1, "xi": x, "psi": None, "val_dense": 0.9, "near_zero": 0.01 * i,
             **{f"val_keep_{k:g}": 0.8 - k for k in KEEPS}} for i, x in enumerate(xi)]
    choice = {"prior": "laplace", "walk": "xi", "ratio": None,
              "chosen": {"xi": xi[2], "val_keep_0.05": 0.75}}
    figure = plot_path(rows, KEEPS, choice, 0.05)
    bottom = figure.axes[1]
    labels = tick_labels(bottom)
    assert [t.get_text() for t in labels] == [f"{x:.2g}" for x in xi]
    assert_no_overlap(labels)


def test_shrinkage_forest_legend_matches_what_is_drawn():
    """A posterior narrower than its dot still shows its interval (caps at both ends); the legend
    names exactly the artists drawn."""
    rng = np.random.default_rng(0)
    draws = {"fc1": rng.normal(0.05, 1e-6, (20, 30)), "fc2": rng.normal(0.1, 0.02, (20, 30))}
    ax = plots.plot_layer_shrinkage({"SVI": draws}, {k: v[0] for k, v in draws.items()}).axes[0]
    container = ax.containers[0]
    caps = [line for line in container.lines[1] if len(line.get_xdata())]
    assert caps, "the interval's caps are drawn"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(["SVI: mean and 90% interval", "MAP"])
    assert container.get_label() == "SVI: mean and 90% interval"


def test_svi_summary_has_no_mcmc_columns_and_no_warning(caplog):
    """Mean, sd and the 90% interval.  ArviZ 0.23: sd with ddof 1 and the HDI (the narrowest interval
    holding floor(0.9 S) + 1 sorted draws); 1.x computes sd and interval its own way (checked loosely)."""
    draws = np.random.default_rng(1).normal(size=(20, 3))
    idata = svi_inference_data({"w": draws}, [1.0, 0.5])
    with caplog.at_level(logging.WARNING):
        table = posterior_summary(idata)
    assert not caplog.records
    assert list(table.columns) == ["mean", "sd", "hdi90_lb", "hdi90_ub"]
    np.testing.assert_allclose(table["mean"], draws.mean(0), rtol=1e-6)
    if arviz_compat.ARVIZ_1:
        assert ((table["sd"] >= draws.std(0) * (1 - 1e-6)) & (table["sd"] <= draws.std(0, ddof=1) * (1 + 1e-6))).all()
        assert ((table["hdi90_lb"] < table["mean"]) & (table["mean"] < table["hdi90_ub"])).all()
        return
    np.testing.assert_allclose(table["sd"], draws.std(0, ddof=1), rtol=1e-6)
    inside = int(math.floor(0.9 * 20))
    for j in range(3):
        s = np.sort(draws[:, j])
        start = int(np.argmin(s[inside:] - s[:20 - inside]))
        assert table["hdi90_lb"].iloc[j] == pytest.approx(s[start], rel=1e-6)
        assert table["hdi90_ub"].iloc[j] == pytest.approx(s[start + inside], rel=1e-6)


def test_mcmc_summary_keeps_the_chain_diagnostics():
    idata = mcmc_inference_data({"w": np.random.default_rng(2).normal(size=(2, 50, 3))})
    assert {"ess_bulk", "r_hat"} <= set(posterior_summary(idata).columns)


def test_posterior_forest_is_one_readable_row_per_entry():
    rng = np.random.default_rng(3)
    small = svi_inference_data({"w": rng.normal(size=(20, 2, 3)), "v": rng.normal(size=(20, 40))}, [1.0])
    figures = {name: plots.plot_posterior_forest(small, name) for name in ("w", "v")}
    for name, entries in (("w", 6), ("v", 40)):
        height = figures[name].get_size_inches()[1] * figures[name].dpi
        assert height / entries >= 20  # pixels per row: labels do not overlap
        if not arviz_compat.ARVIZ_1:  # 0.23 labels rows as y ticks (1.x draws its labels as text)
            rows = [t for t in figures[name].axes[0].get_yticklabels() if t.get_text()]
            assert len(rows) == entries
    big = plots.plot_posterior_forest(svi_inference_data({"u": rng.normal(size=(20, 300, 100))}, [1.0]), "u")
    assert big.get_size_inches()[1] < 0.28 * 48 + 2  # a 30,000-entry layer: about 48 rows, not 30,000
    if not arviz_compat.ARVIZ_1:
        assert len([t for t in big.axes[0].get_yticklabels() if t.get_text()]) == 6 * 6
    with pytest.raises(Exception, match="not in the posterior"):
        plots.plot_posterior_forest(small, "u")


def test_fit_svi_prints_the_per_layer_shrinkage_table():
    layers = [{"layer": "fc1.weight", "n_weights": 235200, "eps": 0.001, "mean_abs_map": 0.0123,
               "mean_abs_shift": 0.0004, "mean_sd": 0.0021, "median_snr": 3.25, "mean_p_small": 0.412,
               "expected_small": 96902.4, "median_coefficient": 0.5},
              {"layer": "fc3.weight", "n_weights": 1000, "eps": 0.01, "mean_abs_map": 0.2, "mean_abs_shift": 0.01,
               "mean_sd": 0.02, "median_snr": 10.0, "mean_p_small": 0.05, "expected_small": 50.0,
               "median_coefficient": None}]
    section = {"method": "svi", "epochs": 3, "num_samples": 20, "layers": layers, "best": []}
    lines = format_posterior(section).splitlines()
    fc1 = next(line for line in lines if line.strip().startswith("fc1.weight")).split()
    assert fc1 == ["fc1.weight", "235,200", "0.0123", "0.0004", "0.0021", "3.25", "0.412", "0.5"]
    fc3 = next(line for line in lines if line.strip().startswith("fc3.weight")).split()
    assert fc3[-1] == "-" and fc3[1] == "1,000"


@pytest.mark.parametrize("spread", [1e-4, 10.0])
def test_hyper_histogram_ticks_are_plain_and_apart(spread):
    """Lambdas within a narrow range (SVI barely moves them) get a linear axis, wide ones a log axis."""
    values = {"fc1.weight_lambda": 1.0 + spread * np.random.default_rng(4).random(500)}
    ax = plots.plot_hyper_histograms(values).axes[0]
    assert ax.get_xscale() == ("log" if spread >= 9 else "linear")
    labels = tick_labels(ax)
    assert labels and all("times" not in t.get_text() for t in labels)
    assert_no_overlap(labels)
