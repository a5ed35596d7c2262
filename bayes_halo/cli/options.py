"""Command-line flags derived from the config declarations, and the one-line error convention.

Every field declared with :func:`bayes_halo.config.fields.setting` becomes a flag (``lr`` ->
``--lr``; a tuple takes several values; a boolean that defaults to False is a switch); the help
text, the choices and the shown default come from the declaration.  Flags default to "not
given", so a run is assembled as: the defaults, then ``--config FILE``, then the flags given.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..config.fields import choices_of, field_default
from ..config.recipes import RECIPES, recipe
from ..config.sections import SECTIONS, RunConfig
from ..errors import BayesHaloError, ConfigError

#: argument-group titles of the run's sections in ``--help``
TITLES = {"prior": "prior", "data": "data", "model": "model", "train": "training (SGD with momentum or AdamW)",
          "prune": "pruning (one shot, after training)", "posterior": "posterior (after the MAP fit)",
          "": "run"}


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr, exit status 2; flags only in full (no abbreviations)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_or_status(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The parsed arguments, or the exit status argparse chose (0 after ``--help``, 2 after a one-line error)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def flag_of(name: str, field: dataclasses.Field | None = None) -> str:
    """The flag of setting ``name`` (``"lr_gamma"`` -> ``"--lr-gamma"``)."""
    if field is not None and field.metadata.get("flag"):
        return field.metadata["flag"]
    return "--" + name.replace("_", "-")


def add_fields(group: argparse._ArgumentGroup, cls: type, defaults: Any, skip: Iterable[str] = ()) -> list[str]:
    """Add a flag for every declared field of dataclass ``cls``; ``defaults`` supplies the shown values."""
    hints = typing.get_type_hints(cls)
    added = []
    for field in dataclasses.fields(cls):
        if field.name in skip or "help" not in field.metadata or _is_section(hints[field.name]):
            continue
        added.append(field.name)
        kind = hints[field.name]
        declared, default = field_default(field), getattr(defaults, field.name)
        if declared is None and default is not None:
            default = None  # resolved later (a prior's default strength): the help text says so
        shown = "" if default is None or default == () or isinstance(default, bool) else f" (default: {_show(default)})"
        options: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS,
                                   "help": (field.metadata["help"] + shown).replace("%", "%%")}
        if kind is bool:
            options["action"] = "store_false" if default else "store_true"
        else:
            element = _element(kind)
            options["type"] = element
            choices = choices_of(field)
            if choices is not None:
                options["choices"] = choices
            if typing.get_origin(kind) is tuple:
                options["nargs"] = "+"
            if field.metadata.get("metavar"):
                options["metavar"] = field.metadata["metavar"]
        group.add_argument(flag_of(field.name, field), **options)
    return added


def add_run_arguments(parser: argparse.ArgumentParser, base: RunConfig, skip: Iterable[str] = (),
                      sections: Sequence[str] = tuple(SECTIONS)) -> None:
    """Groups of flags for the run's ``sections`` (and ``seed``, ``threads``), plus ``--config``."""
    skip = set(skip)
    for name in sections:
        add_fields(parser.add_argument_group(TITLES[name]), SECTIONS[name], getattr(base, name), skip)
    run = parser.add_argument_group(TITLES[""])
    add_fields(run, RunConfig, base, skip)
    run.add_argument("--recipe", choices=tuple(RECIPES),
                     help="start from a published recipe; --config and the flags given override it. "
                          + "; ".join(f"{name}: {r.description}" for name, r in RECIPES.items()).replace("%", "%%"))
    run.add_argument("--config", type=Path, metavar="FILE",
                     help="start from the settings in this JSON file (e.g. a run's config.json); flags override it")


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The flags of dataclass ``cls`` that were given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}


def run_config(args: argparse.Namespace, base: RunConfig) -> RunConfig:
    """``base``, then the ``--recipe``, then the ``--config`` file, then the flags given: the validated RunConfig."""
    config, chosen, explicit = base, getattr(args, "recipe", None), set()
    if chosen is not None:
        config = config.replace(**recipe(chosen).settings)
    if getattr(args, "config", None) is not None:
        from_file = read_config_file(args.config).flat()
        config, explicit = config.replace(**from_file), set(from_file)
    flags = {name: value for cls in (*SECTIONS.values(), RunConfig) for name, value in given(args, cls).items()
             if not dataclasses.is_dataclass(value)}
    config = config.replace(**flags)
    if chosen is not None:  # what only the run's prior takes, unless given
        extra = recipe(chosen).by_prior.get(config.prior.prior_name, {})
        config = config.replace(**{k: v for k, v in extra.items() if k not in flags and k not in explicit})
    return config


def read_config_file(path: Path) -> RunConfig:
    """A RunConfig from a JSON file: nested by section (as ``config.json``) or flat."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"config file {path} is not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    try:
        return RunConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from None


def check_out_dir(out: Path) -> None:
    """Refuse an output folder that is an existing file."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder; choose another `out`")


def run_command(prog: str, body: Callable[[], int], flags: dict[str, str]) -> int:
    """Run ``body``; a BayesHaloError becomes one line on stderr (quoted settings shown as flags), exit 2."""
    try:
        return body()
    except BayesHaloError as err:
        print(f"{prog}: error: {as_flags(err, flags)}", file=sys.stderr)
        return 2


def as_flags(err: BayesHaloError, flags: dict[str, str]) -> str:
    """The error's message with each setting it quotes (```lr` must be``) named by its flag (``--lr must be``)."""
    return re.sub(r"`(\w+)`", lambda m: flags.get(m.group(1), m.group(1)), str(err))


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> its first long flag, for every option of ``parser``."""
    names = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if longs:
            names[action.dest] = longs[0]
    return names


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and hint in SECTIONS.values()


def _element(hint: Any) -> type:
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(_show(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)
