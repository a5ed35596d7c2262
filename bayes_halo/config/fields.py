"""Declared settings: one ``setting(...)`` per config field carries its help text and constraint.

The command lines, the validation and ``--help`` are derived from these declarations (open_lth's
hparams, scikit-learn's parameter constraints), so a default or a range is written once::

    epochs: int = setting(30, "training epochs", at_least(1))
"""
from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class Constraint:
    """A predicate on one value and the words that describe it (``"a positive number"``)."""

    ok: Callable[[Any], bool]
    what: str

    def check(self, name: str, value: Any) -> None:
        """Raise ConfigError naming setting ``name`` unless ``value`` satisfies the constraint."""
        try:
            good = bool(self.ok(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            raise ConfigError(f"`{name}` must be {self.what}, got {value!r}")


def at_least(low: int) -> Constraint:
    """An integer ``>= low``."""
    return Constraint(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low,
                      f"an integer of at least {low}")


def positive() -> Constraint:
    """A finite number ``> 0``."""
    return Constraint(lambda v: math.isfinite(v) and v > 0, "a positive number")


def non_negative() -> Constraint:
    """A finite number ``>= 0``."""
    return Constraint(lambda v: math.isfinite(v) and v >= 0, "0 or more")


def interval(low: float, high: float, closed: str = "left") -> Constraint:
    """A number in ``[low, high)`` (``closed="left"``), ``(low, high]`` (``"right"``), ``(low, high)``
    (``"neither"``) or ``[low, high]`` (``"both"``)."""
    left = (lambda v: v >= low) if closed in ("left", "both") else (lambda v: v > low)
    right = (lambda v: v <= high) if closed in ("right", "both") else (lambda v: v < high)
    brackets = ("[" if closed in ("left", "both") else "(") + f"{low:g}, {high:g}" + (
        "]" if closed in ("right", "both") else ")")
    return Constraint(lambda v: math.isfinite(v) and left(v) and right(v), f"in {brackets}")


def each(inner: Constraint, non_empty: bool = False) -> Constraint:
    """Every element of a sequence satisfies ``inner`` (and, with ``non_empty``, there is one)."""
    return Constraint(lambda vs: (len(vs) > 0 or not non_empty) and all(inner.ok(v) for v in vs),
                      ("one or more values, each " if non_empty else "values each ") + inner.what)


def setting(default: Any, help: str, constraint: Constraint | None = None, *,
            choices: Callable[[], Iterable[str]] | Sequence[str] | None = None,
            metavar: str | None = None, flag: str | None = None) -> Any:
    """A dataclass field with its help text, its constraint and (optionally) its choices.

    ``choices`` may be a callable (a registry's names, read when the parser is built); ``flag``
    overrides the derived flag (``--no-download`` for a boolean that defaults to True).
    """
    meta = {"help": help, "constraint": constraint, "choices": choices, "metavar": metavar, "flag": flag}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def choices_of(field: dataclasses.Field) -> tuple[str, ...] | None:
    """The field's current choices (a registry is read now), or None."""
    choices = field.metadata.get("choices")
    if choices is None:
        return None
    return tuple(choices() if callable(choices) else choices)


def field_default(field: dataclasses.Field) -> Any:
    """The declared default of ``field``."""
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return field.default


def check_fields(section: Any) -> None:
    """Coerce tuple fields and check every declared constraint and choice of ``section``."""
    hints = typing.get_type_hints(type(section))
    for field in dataclasses.fields(section):
        value = getattr(section, field.name)
        if value is None:
            continue
        if _is_tuple(hints[field.name]):
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise ConfigError(f"`{field.name}` must be a list, got {value!r}")
            value = tuple(_element_type(hints[field.name])(v) for v in value)
            object.__setattr__(section, field.name, value)
        elif hints[field.name] is float or _optional_of(hints[field.name]) is float:
            if isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                object.__setattr__(section, field.name, value)
        choices = choices_of(field)
        if choices is not None and value not in choices:
            raise ConfigError(f"unknown `{field.name}` {value!r}; choose one of {', '.join(choices)}")
        constraint = field.metadata.get("constraint")
        if constraint is not None:
            constraint.check(field.name, value)


def _is_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple


def _element_type(hint: Any) -> type:
    return typing.get_args(hint)[0]


def _optional_of(hint: Any) -> Any:
    """``X`` for ``X | None``, else None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and type(None) in typing.get_args(hint) else None
