"""Structured pruning: exact group counts, size-normalised scores, masks, and what they buy after removal."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bayes_halo.errors import ConfigError
from bayes_halo.groups import build_groupings
from bayes_halo.models import build_model, prunable_layers
from bayes_halo.pruning import pruned_copy
from bayes_halo.pruning.structured import (group_masks, keep_groups, keep_within_macs, norm_scores,
                                           structured_report)


def test_keep_groups_exact_counts_one_per_grouping_and_ties():
    scores = {"a": torch.tensor([0.1, 0.9, 0.5]), "b": torch.tensor([0.05, 0.01]), "c": torch.tensor([0.5, 0.7])}
    kept = keep_groups(scores, 4)
    # each grouping's best (0.9, 0.05, 0.7) is kept unconditionally; then the first of the tied 0.5 (a before c)
    assert kept["a"].tolist() == [False, True, True] and kept["b"].tolist() == [True, False]
    assert kept["c"].tolist() == [False, True]
    assert sum(int(k.sum()) for k in keep_groups(scores, 0.5).values()) == round(0.5 * 7)
    by_layer = keep_groups(scores, 0.5, by="layer")
    assert [int(k.sum()) for k in by_layer.values()] == [2, 1, 1]  # round-half-even, at least one
    with pytest.raises(ConfigError, match="leaves a layer empty"):
        keep_groups(scores, 2)
    with pytest.raises(ConfigError, match="cannot keep"):
        keep_groups(scores, 8)


def test_norm_scores_are_size_normalised():
    net = build_model("lenet5-caffe", (1, 28, 28), 10)
    groupings = build_groupings("unit", net, prunable_layers(net), torch.zeros(2, 1, 28, 28))
    params = dict(net.named_parameters())
    scores = norm_scores(groupings, params, p=1)
    conv1 = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    by_hand = (conv1.weight.detach().abs().flatten(1).sum(1) + conv1.bias.detach().abs()) / 26
    torch.testing.assert_close(scores[groupings[0].name], by_hand)
    fc = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    torch.testing.assert_close(norm_scores(groupings, params)[groupings[-1].name],
                               fc.weight.detach().norm(dim=0) / math.sqrt(10))


def test_lenet300_input_units_widths_and_macs_against_closed_form():
    """Keeping k2 of fc2's and k3 of fc3's input units leaves 784-k2-k3-10: MACs 784 k2 + k2 k3 + 10 k3."""
    torch.manual_seed(0)
    net = build_model("lenet300", (1, 28, 28), 10).eval()
    groupings = build_groupings("unit", net, prunable_layers(net), torch.zeros(2, 1, 28, 28))
    assert [g.n_groups for g in groupings] == [784, 300, 100]
    scores = norm_scores(groupings, dict(net.named_parameters()))
    kept = {groupings[0].name: torch.ones(784, dtype=torch.bool),
            groupings[1].name: torch.arange(300) < 37, groupings[2].name: torch.arange(100) % 7 == 0}
    masks = group_masks(groupings, kept, dict(net.named_parameters()))
    report = structured_report(pruned_copy(net, masks), (1, 28, 28))
    assert report["units"] == [37, 15, 10] and report["macs"] == 784 * 37 + 37 * 15 + 15 * 10
    assert report["parameters"] == report["macs"] + 37 + 15 + 10
    masks, best = keep_within_macs(net, groupings, scores, (1, 28, 28), max_macs=60_000)
    assert best["macs"] <= 60_000 and bool(masks["fc1.weight"].all())  # the pixels cost nothing: all kept
    hidden = {g.name: scores[g.name] / scores[g.name].abs().mean() for g in groupings[1:]}
    k = best["groups_kept"] - 784
    plus_one = {groupings[0].name: torch.ones(784, dtype=torch.bool), **keep_groups(hidden, k + 1)}
    over = structured_report(pruned_copy(net, group_masks(groupings, plus_one, dict(net.named_parameters()))),
                             (1, 28, 28))
    assert over["macs"] > 60_000


def test_group_halo_coefficient_criterion_is_minus_xi_over_lambda_squared():
    from bayes_halo.models.bayesian import BayesianModule
    from bayes_halo.priors import prior_class
    from bayes_halo.pruning.structured import group_criteria

    torch.manual_seed(1)
    net = build_model("lenet300", (1, 28, 28), 10)
    module = BayesianModule(net, prior_class("group-halo")(xi=2e-4, psi=1e-4), n_data=100, groups="unit",
                            positivity="abs", example_input=torch.zeros(2, 1, 28, 28))
    site = next(iter(module.groupings))
    with torch.no_grad():
        for raw in module.hyper_parameters():
            raw.uniform_(0.5, 2.0)
    criteria = group_criteria(module)
    lam = module.hyper(site)["lambda"].detach()
    torch.testing.assert_close(criteria["coefficient"][site], -2e-4 / lam ** 2)
    assert criteria["norm"][site].shape == (module.groupings[site].n_groups,)


def test_lenet5_caffe_budget_keeps_whole_channels_and_fits():
    """fc1's 800 input features are not units (export removes conv2 channels, not features): always kept;
    the ranked channels and hidden units fill the budget (no dead chain of mismatched groups)."""
    torch.manual_seed(0)
    net = build_model("lenet5-caffe", (1, 28, 28), 10).eval()
    groupings = build_groupings("unit", net, prunable_layers(net), torch.zeros(2, 1, 28, 28))
    masks, best = keep_within_macs(net, groupings, norm_scores(groupings, dict(net.named_parameters())),
                                   (1, 28, 28), max_macs=153_000)
    c1, c2, h, _ = best["units"]
    assert best["macs"] == c1 * 25 * 576 + c2 * c1 * 25 * 64 + 16 * c2 * h + 10 * h <= 153_000
    assert best["macs"] > 0.9 * 153_000  # the budget is used, not a dead chain of single units


def test_structured_sweep_rows_match_keep_counts_and_reports():
    from bayes_halo.models.bayesian import BayesianModule
    from bayes_halo.priors import prior_class
    from bayes_halo.pruning.structured import structured_sweep

    torch.manual_seed(2)
    net = build_model("lenet300", (1, 28, 28), 10)
    module = BayesianModule(net, prior_class("group-halo")(xi=2e-4, psi=1e-4), n_data=100, groups="unit",
                            positivity="abs", example_input=torch.zeros(2, 1, 28, 28))
    seen = []
    rows = structured_sweep(module, [0.5, 0.1], "global", lambda m: seen.append(m) or {"test_accuracy": 0.0},
                            (1, 28, 28))
    assert [(r["criterion"], r["keep"]) for r in rows] == [("norm", 0.5), ("norm", 0.1), ("coefficient", 0.5),
                                                           ("coefficient", 0.1)]
    assert [r["groups_kept"] for r in rows] == [592, 118, 592, 118] and rows[0]["groups_total"] == 1184
    for row, masked in zip(rows, seen):
        assert row["units"] == structured_report(masked, (1, 28, 28))["units"]
        assert row["macs"] == 784 * row["units"][0] + row["units"][0] * row["units"][1] + 10 * row["units"][1]
