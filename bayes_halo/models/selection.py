"""Which parameters of a network carry a sparsity prior and get pruned.

By default: the weights of every ``nn.Linear`` and ``nn.Conv{1,2,3}d`` layer (the paper's
MNIST scope).  ``scope="conv"`` keeps only convolutions (the paper's CIFAR scope);
``include_bias`` adds those layers' biases; ``exclude`` drops layers by name (e.g. the
classifier).  ``layers`` replaces the default choice of layers: a module type (or a tuple of
types), layer names, or a predicate ``(name, module) -> bool``.  Names are the
``named_parameters`` names, e.g. ``"fc1.weight"``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, Union

from torch import nn

from ..errors import ConfigError

Scope = Literal["all", "conv"]
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_PRUNABLE = (nn.Linear, *_CONV)
#: which layers carry the prior: module type(s), layer names, or a predicate on (name, module)
Layers = Union[type, tuple[type, ...], Iterable[str], Callable[[str, nn.Module], bool], None]


def _chooser(layers: Layers, scope: Scope, names: set[str]) -> Callable[[str, nn.Module], bool]:
    """``(name, module) -> bool`` for a ``layers`` argument (None: Linear/Conv in ``scope``)."""
    if layers is None:
        kinds = _CONV if scope == "conv" else _PRUNABLE
        return lambda name, layer: isinstance(layer, kinds)
    if isinstance(layers, type) or (isinstance(layers, tuple) and all(isinstance(t, type) for t in layers)):
        return lambda name, layer: isinstance(layer, layers)
    if callable(layers):
        return layers
    wanted = {layers} if isinstance(layers, str) else set(layers)
    unknown = wanted - names
    if unknown:
        raise ConfigError(f"unknown layer(s) {sorted(unknown)}; layers are {sorted(n for n in names if n)}")
    return lambda name, layer: name in wanted


def prunable_layers(module: nn.Module, scope: Scope = "all", exclude: Iterable[str] = (),
                    layers: Layers = None) -> dict[str, nn.Module]:
    """Layers in scope (or chosen by ``layers``), keyed by their module name, in registration order."""
    if scope not in ("all", "conv"):
        raise ConfigError(f"unknown `prune_scope` {scope!r}: choose 'all' or 'conv'")
    excluded = set(exclude)
    names = {name for name, _ in module.named_modules()}
    unknown = excluded - names
    if unknown:
        raise ConfigError(f"cannot `exclude` unknown layer(s) {sorted(unknown)}; layers are {sorted(n for n in names if n)}")
    chosen = _chooser(layers, scope, names)
    return {name: layer for name, layer in module.named_modules()
            if name not in excluded and getattr(layer, "weight", None) is not None and chosen(name, layer)}


def prunable_parameters(module: nn.Module, scope: Scope = "all", include_bias: bool = False,
                        exclude: Iterable[str] = (), layers: Layers = None) -> dict[str, nn.Parameter]:
    """Parameters in scope (the ``weight`` of each chosen layer), keyed by their ``named_parameters`` name."""
    selected: dict[str, nn.Parameter] = {}
    for layer_name, layer in prunable_layers(module, scope, exclude, layers).items():
        prefix = f"{layer_name}." if layer_name else ""
        selected[prefix + "weight"] = layer.weight
        if include_bias and getattr(layer, "bias", None) is not None:
            selected[prefix + "bias"] = layer.bias
    if not selected:
        what = "chosen" if layers is not None else "convolution" if scope == "conv" else "Linear/Conv"
        raise ConfigError(f"the network has no {what} layers left to put a prior on")
    return selected


def owner_of(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The submodule holding parameter ``name`` (e.g. ``"fc1.weight"``) and its attribute name.

    Works whether or not the parameter is currently pruned (held as ``<attr>_orig``).
    """
    owner_name, _, attr = name.rpartition(".")
    try:
        owner = module.get_submodule(owner_name)
    except AttributeError as err:
        raise ConfigError(f"the network has no parameter {name!r}") from err
    own = dict(owner.named_parameters(recurse=False))
    if attr not in own and f"{attr}_orig" not in own:
        raise ConfigError(f"the network has no parameter {name!r}")
    return owner, attr


def tensor_at(module: nn.Module, name: str):
    """``module``'s tensor called ``name`` (e.g. ``"fc1.weight"``), also while a pruning mask is attached.

    No validation (it runs every training step); :func:`owner_of` checks that the name exists.
    """
    owner, _, attr = name.rpartition(".")
    return getattr(module.get_submodule(owner), attr)


def parameter_dict_key(name: str) -> str:
    """``nn.ParameterDict`` keys may not contain dots: ``"fc1.weight_lambda" -> "fc1/weight_lambda"``."""
    return name.replace(".", "/")
