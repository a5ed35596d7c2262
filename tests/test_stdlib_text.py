"""stdlib-text: the fixed split by document, the windows, the recorded hash; bits per character by hand."""
import hashlib
import json
import math

import pyro
import pytest
import torch
from pyro import poutine
from torch import nn

from bayes_halo.data import ArrayData, load_dataset
from bayes_halo.data.stdlib_text import CONTEXT, stdlib_topics
from bayes_halo.errors import ConfigError
from bayes_halo.models import build_model
from bayes_halo.models.bayesian import BayesianModule
from bayes_halo.models.likelihoods import SequenceCategorical
from bayes_halo.tasks import TASKS
from bayes_halo.training.evaluate import score


@pytest.fixture(scope="module")
def text():
    return load_dataset("stdlib-text")


def test_split_is_by_document_fixed_and_recorded(text):
    topics = stdlib_topics()
    docs = text.details["documents"]
    names = sorted(topics)
    assert docs["test"] == names[0::10] and docs["val"] == names[5::10]
    assert sorted(docs["train"] + docs["val"] + docs["test"]) == names  # every document once
    for split in ("train", "val", "test"):
        assert text.details["characters"][split] == sum(len(topics[n]) + 1 for n in docs[split])
    assert text.details["sha256"] == hashlib.sha256(json.dumps(topics, sort_keys=True).encode()).hexdigest()
    assert text.details["python"].count(".") == 2 and text.details["origin"] == "pydoc_data.topics"


def test_windows_decode_to_the_documents_and_y_is_x_shifted(text):
    vocabulary = "".join(text.classes)
    first = stdlib_topics()[text.details["documents"]["train"][0]]
    assert "".join(vocabulary[i] for i in text.x_train[0].tolist()) == first[:CONTEXT]
    assert "".join(vocabulary[i] for i in text.y_train[0].tolist()) == first[1:CONTEXT + 1]
    assert torch.equal(text.y_train[:-1, -1], text.x_train[1:, 0])  # windows tile the stream
    assert torch.equal(text.y_train[:, :-1], text.x_train[:, 1:])
    assert text.input_shape == (CONTEXT,) and text.n_observations == text.x_train.numel()
    assert len(vocabulary) == len(set("".join(stdlib_topics().values())) | {"\n"})


class FixedLogits(nn.Module):
    """Logits ``[0, ln 3]`` at every position: p(0) = 1/4, p(1) = 3/4."""

    def forward(self, x):
        return torch.tensor([0.0, math.log(3)]).expand(*x.shape, 2)


def test_bits_per_character_by_hand():
    y = torch.tensor([[1, 0, 1], [1, 1, 0]])
    by_hand = (4 * -math.log2(3 / 4) + 2 * -math.log2(1 / 4)) / 6
    got = score(FixedLogits(), torch.zeros_like(y), y, TASKS["next-character"], batch_size=1)
    assert got == pytest.approx(by_hand, rel=1e-8)  # float32 logits
    nats = float(SequenceCategorical().mean_nll(FixedLogits()(y), y))
    assert got == pytest.approx(nats / math.log(2), rel=1e-6)


@pytest.mark.parametrize("batch", [5, 2])
def test_pyro_likelihood_is_n_times_the_mean_nll(batch):
    """The data plate over N characters weighs a batch of B sequences of T by N / (B T)."""
    net = build_model("char-transformer", (6,), 9)
    x, y = torch.randint(0, 9, (5, 6)), torch.randint(0, 9, (5, 6))
    module = BayesianModule(net, None, n_data=y.numel(), likelihood=SequenceCategorical())
    conditioned = poutine.condition(module.model, data=module.site_values())  # the network's own weights
    trace = poutine.trace(conditioned).get_trace(x[:batch], y[:batch])
    log_lik = trace.log_prob_sum(site_filter=lambda name, site: name == "obs")
    expected = -y.numel() * module.likelihood.mean_nll(net(x[:batch]), y[:batch])  # N * batch mean
    torch.testing.assert_close(log_lik, expected.detach(), rtol=1e-5, atol=1e-4)
    pyro.clear_param_store()


def test_sequences_must_be_int64_pairs_of_one_shape():
    x = torch.zeros(3, 4, dtype=torch.int64)
    with pytest.raises(ConfigError, match="int64"):
        ArrayData("text", x.float(), x, x, x, x, x, task="next-character")
    with pytest.raises(ConfigError, match="length"):
        ArrayData("text", x, x, x[:, :2], x[:, :2], x, x, task="next-character")
