"""Pruning heads and MLP units by group: exact counts, magnitude and Wanda scores against direct computations."""
import math

import pytest
import torch
from torch.nn import functional as F

from bayes_halo.errors import ConfigError
from bayes_halo.models import build_model
from bayes_halo.pruning import pruned_copy
from bayes_halo.pruning.heads import (head_unit_groupings, keep_counts, keep_exact, magnitude_scores, prune_masks,
                                      wanda_scores)


@pytest.fixture
def vit():
    return build_model("vit-tiny", (1, 28, 28), 10).eval()


def test_groupings_are_the_heads_and_units_of_every_block(vit):
    heads, units = head_unit_groupings(vit)
    assert [g.name for g in heads] == [f"blocks.{i}.attn:heads" for i in range(4)]
    assert [g.n_groups for g in heads] == [4] * 4 and [g.n_groups for g in units] == [128] * 4
    assert keep_counts(vit, 0.5, 0.25) == (8, 128)


def test_magnitude_is_the_norm_of_the_head_slices(vit):
    heads, units = head_unit_groupings(vit)
    scores = magnitude_scores(heads + units, vit)
    attn, mlp = vit.blocks[1].attn, vit.blocks[1].mlp
    rows = slice(16, 32)  # head 1
    pieces = [p.weight[rows].flatten() for p in (attn.q, attn.k, attn.v)] + \
             [p.bias[rows] for p in (attn.q, attn.k, attn.v)] + [attn.out.weight[:, rows].flatten()]
    assert scores["blocks.1.attn:heads"][1] == pytest.approx(float(torch.cat(pieces).detach().norm()), rel=1e-6)
    unit = torch.cat([mlp.fc1.weight[7], mlp.fc1.bias[7:8], mlp.fc2.weight[:, 7]])
    assert scores["blocks.1.mlp:units"][7] == pytest.approx(float(unit.detach().norm()), rel=1e-6)


@torch.no_grad()
def test_wanda_scores_of_block_0_by_a_direct_forward_pass(vit):
    x = torch.rand(6, 1, 28, 28)
    heads, units = head_unit_groupings(vit)
    scores = wanda_scores(heads + units, vit, x)
    block = vit.blocks[0]
    tokens = vit.embed(vit.patches(x)) + vit.position
    a = block.norm1(tokens).reshape(-1, 64).double()
    q, k, v = (p(block.norm1(tokens)).view(6, 16, 4, 16).transpose(1, 2)
               for p in (block.attn.q, block.attn.k, block.attn.v))
    per_head = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(-1, 64).double()
    mid = tokens + block.attn(block.norm1(tokens))
    b = block.norm2(mid).reshape(-1, 64).double()
    hidden = F.gelu(block.mlp.fc1(block.norm2(mid))).reshape(-1, 128).double()
    n = a.shape[0]
    h = 2
    rows = slice(16 * h, 16 * (h + 1))
    expected = sum(float((p.weight[rows].double().abs() * a.norm(dim=0)).sum()
                         + p.bias[rows].double().abs().sum() * math.sqrt(n)) for p in (block.attn.q, block.attn.k,
                                                                                          block.attn.v))
    expected += float((block.attn.out.weight[:, rows].double().abs() * per_head[:, rows].norm(dim=0)).sum())
    assert float(scores["blocks.0.attn:heads"][h]) == pytest.approx(expected, rel=1e-5)
    j = 11
    unit = float((block.mlp.fc1.weight[j].double().abs() * b.norm(dim=0)).sum()
                 + block.mlp.fc1.bias[j].double().abs() * math.sqrt(n)
                 + block.mlp.fc2.weight[:, j].double().abs().sum() * hidden[:, j].norm())
    assert float(scores["blocks.0.mlp:units"][j]) == pytest.approx(unit, rel=1e-5)


def test_keep_exact_keeps_the_top_k_over_layers_and_may_empty_a_layer():
    scores = {"a": torch.tensor([0.1, 0.9, 0.5]), "b": torch.tensor([0.2, 0.2]), "c": torch.tensor([0.8, 0.7])}
    kept = keep_exact(scores, 4)
    assert {k: v.tolist() for k, v in kept.items()} == {"a": [False, True, True], "b": [False, False],
                                                         "c": [True, True]}
    assert sum(int(v.sum()) for v in keep_exact(scores, 5).values()) == 5
    assert keep_exact(scores, 5)["b"].tolist() == [True, False]  # tie: the earlier group
    with pytest.raises(ConfigError, match="cannot keep 8 of 7"):
        keep_exact(scores, 8)


@pytest.mark.parametrize("name, shape, vocab", [("vit-tiny", (1, 28, 28), 10), ("char-transformer", (32,), 20)])
def test_pruned_and_shrunk_network_has_the_exact_counts_and_the_masked_outputs(name, shape, vocab):
    net = build_model(name, shape, vocab).eval()
    heads, units = head_unit_groupings(net)
    x = torch.rand(4, *shape) if len(shape) == 3 else torch.randint(0, vocab, (4, *shape))
    scores = wanda_scores(heads + units, net, x)
    scores["blocks.3.attn:heads"] = scores["blocks.3.attn:heads"] * 0  # last layer's heads lose every tie
    masked = pruned_copy(net, prune_masks(net, scores, 5, 100))
    small = masked.bayes_halo_shrunk()
    assert sum(small.heads) == 5 and sum(small.hidden) == 100 and small.heads[3] == 0
    torch.testing.assert_close(small(x), masked(x), atol=1e-4, rtol=0)
