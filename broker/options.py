"""Command-line options declared once, as fields of a settings dataclass.

Each ``option()`` field carries its flag, help, check and parser; the parser
(``add_options``), the values it gives (``option_values``), the checks (``check_options``),
a TOML configuration file (``read_option_file``) and the docs' option reference all come
from the declarations. ``spoolgear serve`` (``broker.config.ServerConfig``) and ``spoolgear
spooler`` (``broker.uwsgi_compat.spooler.SpoolerSettings``) are declared this way.
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, field, fields
from typing import Any

from broker.errors import ConfigurationError

Check = Callable[[Any], bool]


def option(
    default: Any,
    help: str,
    *,
    flag: str = "",
    aliases: tuple[str, ...] = (),
    metavar: str | None = None,
    check: Check | None = None,
    rule: str = "",
    group: str = "",
    repeat: bool = False,
    parse: Callable[[str], Any] | None = None,
    environment: str = "",
) -> Any:
    """One option, declared once: its field, its command-line flag (``--`` plus the
    field's name with dashes unless ``flag``; ``aliases`` are other spellings, such as
    uWSGI's names or a short flag), its help, and the ``check`` its value must pass
    (``rule`` says what that is, in the error); ``parse`` reads the command-line text
    (default: the default's type); ``environment`` names a variable that gives the value
    when the flag does not (gearmand's TLS variables)."""
    metadata = {
        "help": help,
        "flag": flag,
        "aliases": aliases,
        "metavar": metavar,
        "check": check,
        "rule": rule,
        "group": group,
        "repeat": repeat,
        "parse": parse,
        "environment": environment,
    }
    if isinstance(default, list | tuple):
        return field(default=tuple(default), metadata=metadata)
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str) -> float:
    """Seconds from ``3600``, ``90s``, ``30m``, ``1h`` or ``2d``."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        return float(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (seconds, or a number with s, m, h or d)"
        ) from None


def declared_options(settings: Any) -> list[Field[Any]]:
    """The fields of a settings class (or instance) declared with ``option()``; other
    fields are set by the program, not by a flag."""
    return [declared for declared in fields(settings) if "help" in declared.metadata]


def flag_of(declared: Field[Any]) -> str:
    """A declared option's command-line flag."""
    return str(declared.metadata["flag"]) or "--" + declared.name.replace("_", "-")


def default_of(declared: Field[Any]) -> Any:
    if declared.default is not MISSING:
        return declared.default
    factory: Callable[[], Any] = declared.default_factory  # type: ignore[assignment]
    return factory()


def add_options(
    settings: type[Any],
    parser: argparse.ArgumentParser,
    groups: Mapping[str, argparse._ArgumentGroup] | None = None,
) -> None:
    """The declared options of ``settings`` as arguments of ``parser`` (or of the
    argument group their ``group`` names)."""
    for declared in declared_options(settings):
        meta = declared.metadata
        default = default_of(declared)
        target = (groups or {}).get(meta["group"], parser)
        flags = [flag_of(declared), *meta["aliases"]]
        shown = " ".join(default) if meta["repeat"] else default
        help_text = f"{meta['help']} (default: {'none' if shown in ('', None) else shown})"
        if meta["environment"]:
            help_text += f"; ${meta['environment']} when not given"
        if isinstance(default, bool):
            target.add_argument(*flags, dest=declared.name, action="store_true", help=meta["help"])
        elif meta["repeat"]:
            target.add_argument(
                *flags,
                dest=declared.name,
                action="append",
                metavar=meta["metavar"],
                help=help_text,
            )
        else:
            target.add_argument(
                *flags,
                dest=declared.name,
                type=meta["parse"] or type(default),
                default=default,
                metavar=meta["metavar"],
                help=help_text,
            )


def option_values(settings: type[Any], parsed: argparse.Namespace) -> dict[str, Any]:
    """The declared options' values from parsed ``add_options`` arguments; a repeatable
    option not given is left out (its default applies), and ``none`` empties a list
    that has a default."""
    values = {}
    for declared in declared_options(settings):
        value = getattr(parsed, declared.name)
        if declared.metadata["repeat"]:
            if value is None:
                continue
            if default_of(declared):
                value = [item for item in value if item != "none"]
            value = tuple(value)
        values[declared.name] = value
    return values


def check_options(settings: Any) -> None:
    """Each declared option's own ``check``, refused with its flag and rule."""
    for declared in declared_options(settings):
        check, value = declared.metadata["check"], getattr(settings, declared.name)
        if check is not None and not check(value):
            raise ConfigurationError(
                f"{flag_of(declared)} {declared.metadata['rule']}, got {value!r}"
            )


def read_option_file(settings: type[Any], path: str) -> dict[str, Any]:
    """Options from a TOML file, keyed by their flags without the dashes (``job-retries =
    3``, ``uwsgi-socket = ["127.0.0.1:3031"]``), as field names to values. A key that is
    no option is refused by name (a misspelt key would otherwise be a setting silently
    ignored); types are checked here, the options' rules later as for the command line."""
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"--config {path}: {exc}") from exc
    by_key = {flag_of(known).removeprefix("--"): known for known in declared_options(settings)}
    values = {}
    for key, value in table.items():
        declared = by_key.get(key)
        if declared is None:
            close = difflib.get_close_matches(key, by_key, 1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"--config {path}: {key!r} is not an option{hint}")
        values[declared.name] = _file_value(declared, value, f"--config {path}: {key}")
    return values


def _file_value(declared: Field[Any], value: Any, where: str) -> Any:
    """A TOML value as the command line would have given it: a list for a repeatable
    option (a lone string is a list of one), text read by the option's own parser."""
    default = default_of(declared)
    if declared.metadata["repeat"]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ConfigurationError(f"{where} must be a string or a list of strings")
        return items
    expected = type(default)
    parse = declared.metadata["parse"] or expected
    if isinstance(value, str) and expected is not bool:
        try:
            return parse(value)
        except ValueError as exc:
            raise ConfigurationError(f"{where}: {exc}") from exc
    if expected is float and type(value) is int:
        return float(value)
    if type(value) is not expected:
        raise ConfigurationError(f"{where} must be {expected.__name__}, not {value!r}")
    return value
