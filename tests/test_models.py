"""LeNet architectures against their published parameter counts, and the model registry."""
import pytest
import torch
from torch import nn

from bayes_halo.errors import ConfigError
from bayes_halo.models import (LeNet5, LeNet5Caffe, LeNet300100, available_models, build_model,
                               prunable_parameters, register_model)
from bayes_halo.models import registry


@pytest.fixture
def clean_registry(monkeypatch):
    """Let a test register models without leaking them into other tests."""
    monkeypatch.setattr(registry.MODELS, "entries", dict(registry.MODELS.entries))


# Published parameter counts (LeNet-300-100 and LeNet-5-Caffe: Han et al. 2015; classic LeNet-5).
@pytest.mark.parametrize("name, n_params", [("lenet300", 266_610), ("lenet5", 61_706),
                                            ("lenet5-caffe", 431_080)])
def test_parameter_counts_match_published_numbers(name, n_params):
    model = build_model(name, (1, 28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == n_params


def test_lenet300_weight_count_and_layer_names():
    model = LeNet300100((1, 28, 28), 10)
    weights = prunable_parameters(model)
    assert list(weights) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert sum(w.numel() for w in weights.values()) == 266_200


@pytest.mark.parametrize("cls, layers", [
    (LeNet5, ["conv1", "conv2", "fc1", "fc2", "fc3"]),
    (LeNet5Caffe, ["conv1", "conv2", "fc1", "fc2"]),
])
def test_conv_nets_have_readable_layer_names(cls, layers):
    assert [name for name, _ in cls((1, 28, 28), 10).named_children()] == layers


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "lenet5-caffe"])
def test_outputs_are_logits_per_class(name):
    model = build_model(name, (1, 28, 28), 7)
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_lenet300_accepts_any_input_shape(shape):
    model = build_model("lenet300", shape, 10)
    assert model.fc1.in_features == shape[0] * shape[1] * shape[2]
    assert model(torch.rand(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize("name", ["lenet5", "lenet5-caffe"])
def test_conv_nets_reject_other_shapes_and_point_to_lenet300(name):
    with pytest.raises(ConfigError, match="lenet300"):
        build_model(name, (1, 8, 8), 10)


def test_bad_class_count_is_a_config_error():
    with pytest.raises(ConfigError, match="n_classes"):
        LeNet300100((1, 28, 28), 1)


def test_builtins_are_registered():
    assert {"lenet300", "lenet5", "lenet5-caffe"} <= set(available_models())
    assert isinstance(build_model("lenet5-caffe", (1, 28, 28), 10), LeNet5Caffe)


def test_registry_round_trip_with_a_user_model(clean_registry):
    @register_model("tiny-linear")
    def tiny(input_shape, n_classes):
        c, h, w = input_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, n_classes))

    assert "tiny-linear" in available_models()
    model = build_model("tiny-linear", (1, 8, 8), 3)
    assert model(torch.rand(4, 1, 8, 8)).shape == (4, 3)
    assert list(prunable_parameters(model)) == ["1.weight"]

    with pytest.raises(ConfigError, match="overwrite=True"):
        register_model("tiny-linear")(tiny)
    register_model("tiny-linear", overwrite=True)(lambda shape, k: LeNet300100(shape, k))
    assert isinstance(build_model("tiny-linear", (1, 8, 8), 3), LeNet300100)


def test_registry_rejects_factories_that_return_no_module(clean_registry):
    register_model("not-a-net")(lambda shape, k: "oops")
    with pytest.raises(ConfigError, match="nn.Module"):
        build_model("not-a-net", (1, 28, 28), 10)


def test_unknown_model_lists_the_choices():
    with pytest.raises(ConfigError) as err:
        build_model("resnet9000", (1, 28, 28), 10)
    assert all(name in str(err.value) for name in ("lenet300", "lenet5", "lenet5-caffe"))


@pytest.mark.parametrize("shape", [(3, 5, 24, 24), (2, 4, 9, 7)])
def test_max_pool_2x2_equals_torch_max_pool_values_and_gradient(shape):
    """The LeNets' pooling against F.max_pool2d (odd sizes: floor mode); continuous random inputs have no ties."""
    from torch.nn import functional as F

    from bayes_halo.models.lenet import max_pool_2x2
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, dtype=torch.float64)
    ours, = torch.autograd.grad((max_pool_2x2(x) * weights).sum(), x)
    reference, = torch.autograd.grad((F.max_pool2d(x, 2) * weights).sum(), x)
    assert torch.equal(max_pool_2x2(x), F.max_pool2d(x, 2))
    assert torch.equal(ours, reference)
