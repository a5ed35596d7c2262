"""A registry: things of one kind by name, filled by a decorator (models and data sets use one each)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries of one ``kind`` (``"model"``); ``register(name)`` decorates, ``get(name)`` looks up.

    ``hint`` ends the unknown-name error (how to add one); ``sort`` lists names sorted, else in
    registration order.
    """

    def __init__(self, kind: str, hint: str, sort: bool = False) -> None:
        self.kind, self.hint, self.sort = kind, hint, sort
        self.entries: dict[str, T] = {}

    def register(self, name: str, overwrite: bool = False) -> Callable[[T], T]:
        """Decorator registering its argument under ``name`` (an error if taken, unless ``overwrite``)."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def add(entry: T) -> T:
            if name in self.entries and not overwrite:
                raise ConfigError(f"a {self.kind} named {name!r} is already registered: "
                                  "pick another name or pass overwrite=True")
            self.entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        """The entry registered as ``name``."""
        if name not in self.entries:
            raise ConfigError(f"unknown `{self.kind}` {name!r}: choose one of {', '.join(self.names())} "
                              f"or add yours with {self.hint}")
        return self.entries[name]

    def names(self) -> list[str]:
        """The registered names."""
        return sorted(self.entries) if self.sort else list(self.entries)
