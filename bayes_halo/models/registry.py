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
from ..registry import Registry
from .char_transformer import CharTransformer
from .lenet import LeNet5, LeNet5Caffe, LeNet300100
from .resnet_cifar import resnet18_cifar, resnet20, resnet50_cifar, resnet56
from .vgg import VGG16BN
from .vit import ViTTiny

#: ``factory(input_shape, n_classes)``: ``(C, H, W)`` for images, ``(T,)`` for sequences (``n_classes``: vocabulary)
ModelFactory = Callable[[tuple[int, ...], int], nn.Module]
FactoryT = TypeVar("FactoryT", bound=ModelFactory)

#: every network factory by name
MODELS: Registry[ModelFactory] = Registry("model", "bayes_halo.models.register_model", sort=True)


def register_model(name: str, overwrite: bool = False) -> Callable[[FactoryT], FactoryT]:
    """Decorator registering ``factory(input_shape, n_classes) -> nn.Module`` under ``name``."""
    return MODELS.register(name, overwrite)


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """A fresh network for inputs of ``input_shape`` (``(C, H, W)`` or ``(T,)``) and ``n_classes`` classes."""
    model = MODELS.get(name)(tuple(input_shape), n_classes)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"the factory registered as {name!r} returned {type(model).__name__}, "
                          "not a torch.nn.Module")
    return model


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return MODELS.names()


register_model("lenet300")(LeNet300100)
register_model("lenet5")(LeNet5)
register_model("lenet5-caffe")(LeNet5Caffe)
register_model("vgg16-bn")(VGG16BN)
register_model("resnet20")(resnet20)
register_model("resnet56")(resnet56)
register_model("resnet50-cifar")(resnet50_cifar)
register_model("resnet18-cifar")(resnet18_cifar)
register_model("vit-tiny")(ViTTiny)
register_model("char-transformer")(CharTransformer)
