"""Priors by name: the registry the run assembly and both command lines read (defaults: :mod:`bayes_halo.config.priors`).

    @register_prior
    class MyPrior(Prior):
        name = "my-prior"
        strengths = ("xi", "psi")
        ...

``"none"`` is registered as ``None``: no prior (maximum likelihood).
"""
from __future__ import annotations

from typing import TypeVar

from ..errors import ConfigError
from .base import Prior

PriorT = TypeVar("PriorT", bound=type[Prior])

#: every prior by its command-line name, filled by :func:`register_prior`
PRIORS: dict[str, type[Prior] | None] = {"none": None}


def register_prior(cls: PriorT, overwrite: bool = False) -> PriorT:
    """Register prior class ``cls`` under ``cls.name`` (usable as a class decorator)."""
    name = getattr(cls, "name", None)
    if not (isinstance(cls, type) and issubclass(cls, Prior)) or not isinstance(name, str) or not name:
        raise ConfigError(f"{cls!r} is not a Prior subclass with a non-empty `name`")
    if name in PRIORS and not overwrite:
        raise ConfigError(f"a prior named {name!r} is already registered: pick another name or pass overwrite=True")
    PRIORS[name] = cls
    return cls


def prior_class(name: str) -> type[Prior] | None:
    """The prior class registered as ``name`` (``None`` for ``"none"``)."""
    if name not in PRIORS:
        raise ConfigError(f"unknown `prior` {name!r}; choose one of {', '.join(PRIORS)}")
    return PRIORS[name]


def trainable_priors() -> tuple[str, ...]:
    """Names of the priors with a finite MAP (``"none"`` included): what ``fit`` can train."""
    return tuple(name for name, cls in PRIORS.items() if cls is None or not cls.map_is_degenerate)
