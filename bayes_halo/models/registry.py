"""Networks by name: the built-in LeNets and CIFAR nets plus any ``nn.Module`` a user registers.

    @register_model("my-mlp")
    def my_mlp(input_shape, n_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_classes))

    build_model("my-mlp", (1, 28, 28), 10)
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from ..errors import ConfigError
from .lenet import LeNet5, LeNet5Caffe, LeNet300100
from .resnet_cifar import resnet18_cifar, resnet20, resnet50_cifar, resnet56
from .vgg import VGG16BN

ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]
FactoryT = TypeVar("FactoryT", bound=ModelFactory)

_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str, overwrite: bool = False) -> Callable[[FactoryT], FactoryT]:
    """Decorator registering ``factory(input_shape, n_classes) -> nn.Module`` under ``name``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a model name must be a non-empty string, got {name!r}")

    def add(factory: FactoryT) -> FactoryT:
        if name in _MODELS and not overwrite:
            raise ConfigError(f"a model named {name!r} is already registered: "
                              "pick another name or pass overwrite=True")
        _MODELS[name] = factory
        return factory

    return add


def build_model(name: str, input_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """A fresh network for images of ``input_shape = (C, H, W)`` and ``n_classes`` classes."""
    if name not in _MODELS:
        raise ConfigError(f"unknown `model` {name!r}: choose one of {', '.join(available_models())} "
                          "or add yours with bayes_halo.models.register_model")
    model = _MODELS[name](tuple(input_shape), n_classes)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"the factory registered as {name!r} returned {type(model).__name__}, "
                          "not a torch.nn.Module")
    return model


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


register_model("lenet300")(LeNet300100)
register_model("lenet5")(LeNet5)
register_model("lenet5-caffe")(LeNet5Caffe)
register_model("vgg16-bn")(VGG16BN)
register_model("resnet20")(resnet20)
register_model("resnet56")(resnet56)
register_model("resnet50-cifar")(resnet50_cifar)
register_model("resnet18-cifar")(resnet18_cifar)
