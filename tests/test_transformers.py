"""vit-tiny and char-transformer: attention against torch's, heads and units as slices, shrink and export."""
import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from bayes_halo.errors import ConfigError
from bayes_halo.models import build_model
from bayes_halo.models.transformer import SelfAttention, save_program


def reference_attention(attn: SelfAttention, x, keep=None):
    """Attention by torch's scaled_dot_product_attention over the heads in ``keep`` (default: all)."""
    batch, length, _ = x.shape
    h, d = attn.n_heads, attn.head_dim
    q, k, v = (F.linear(x, p.weight, p.bias).view(batch, length, h, d).transpose(1, 2)
               for p in (attn.q, attn.k, attn.v))
    heads = F.scaled_dot_product_attention(q, k, v, is_causal=attn.causal)  # [B, H, T, D]
    keep = range(h) if keep is None else keep
    out = attn.out.bias.expand(batch, length, -1)
    for j in keep:
        out = out + heads[:, j] @ attn.out.weight[:, j * d:(j + 1) * d].T
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_scaled_dot_product_attention(causal):
    attn = SelfAttention(12, 3, 4, causal)
    x = torch.randn(2, 5, 12)
    torch.testing.assert_close(attn(x), reference_attention(attn, x), atol=1e-5, rtol=1e-5)


def test_a_head_is_its_rows_of_qkv_and_columns_of_out():
    attn = SelfAttention(12, 3, 4, causal=True)
    x = torch.randn(2, 5, 12)
    with torch.no_grad():
        for p in (attn.q, attn.k, attn.v):
            p.weight[4:8] = 0
            p.bias[4:8] = 0
        attn.out.weight[:, 4:8] = 0
    torch.testing.assert_close(attn(x), reference_attention(attn, x, keep=[0, 2]), atol=1e-5, rtol=1e-5)


def test_causal_outputs_ignore_the_future():
    net = build_model("char-transformer", (16,), 7)
    x = torch.randint(0, 7, (2, 16))
    changed = x.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 7
    torch.testing.assert_close(net(x)[:, :10], net(changed)[:, :10])
    assert not torch.allclose(net(x)[:, 10:], net(changed)[:, 10:])


def test_parameter_counts_by_hand():
    vit = build_model("vit-tiny", (1, 28, 28), 10)
    d, m = 64, 128
    block = 2 * 2 * d + 4 * (d * d + d) + (d * m + m) + (m * d + d)
    assert sum(p.numel() for p in vit.parameters()) == (49 * d + d) + 16 * d + 4 * block + 2 * d + (d * 10 + 10)
    char = build_model("char-transformer", (64,), 90)
    assert sum(p.numel() for p in char.parameters()) == 90 * d + 64 * d + 4 * block + 2 * d + (d * 90 + 90)


@pytest.mark.parametrize("name, shape, vocab", [("vit-tiny", (1, 28, 28), 10), ("char-transformer", (32,), 20)])
def test_multiply_adds_match_torch_flop_counter(name, shape, vocab):
    net = build_model(name, shape, vocab)
    x = torch.rand(1, *shape) if len(shape) == 3 else torch.randint(0, vocab, (1, *shape))
    with FlopCounterMode(display=False) as counter:
        net(x)
    assert 2 * net.multiply_adds() == counter.get_total_flops()


def zero_groups(net):
    """Zero: heads 1-2 of block 0, every head of block 1, MLP units 5..40 of block 0, every unit of block 2."""
    d = net.head_dim
    with torch.no_grad():
        for p in ("q", "k", "v"):
            getattr(net.blocks[0].attn, p).weight[d:3 * d] = 0
        net.blocks[0].attn.out.weight[:, d:3 * d] = 0
        net.blocks[1].attn.out.weight.zero_()
        net.blocks[0].mlp.fc1.weight[5:40] = 0
        net.blocks[0].mlp.fc1.bias[5:40] = 0
        net.blocks[0].mlp.fc2.weight[:, 5:40] = 0
        net.blocks[2].mlp.fc2.weight.zero_()


@pytest.mark.parametrize("name, shape, vocab", [("vit-tiny", (1, 28, 28), 10), ("char-transformer", (32,), 20)])
def test_shrunk_network_gives_the_masked_outputs_and_loads_with_torch_alone(name, shape, vocab, tmp_path):
    net = build_model(name, shape, vocab).eval()
    zero_groups(net)
    small = net.bayes_halo_shrunk()
    assert small.heads == [2, 0, 4, 4] and small.hidden == [128 - 35, 128, 0, 128]
    x = torch.rand(3, *shape) if len(shape) == 3 else torch.randint(0, vocab, (3, *shape))
    torch.testing.assert_close(small(x), net(x), atol=1e-4, rtol=0)
    assert small.multiply_adds() < net.multiply_adds()
    loaded = torch.export.load(save_program(small, x, tmp_path / "small.pt2")).module()
    torch.testing.assert_close(loaded(x[:2]), net(x[:2]), atol=1e-4, rtol=0)


def test_transformers_reject_wrong_inputs():
    with pytest.raises(ConfigError, match="patches"):
        build_model("vit-tiny", (1, 30, 30), 10)
    with pytest.raises(ConfigError, match="stdlib-text"):
        build_model("char-transformer", (1, 28, 28), 10)
