"""A tiny declarative config schema: YAML in, a validated dict with defaults and absolute paths out."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
import yaml

from autopi_common import CommonError

__all__ = ["ConfigError", "Field", "FieldType", "Schema", "describe", "load", "non_negative",
           "positive", "read_yaml", "validate"]

log = structlog.get_logger(__name__)


def positive(value: float) -> str | None:
    """A Field check: None when ``value`` > 0, else what was expected."""
    return None if value > 0 else "a number greater than 0"


def non_negative(value: float) -> str | None:
    """A Field check: None when ``value`` >= 0, else what was expected."""
    return None if value >= 0 else "a number 0 or greater"


FieldType = Literal[
    "str", "int", "float", "bool", "list", "list[str]", "dict", "path", "port", "str|list[str]"
]


class ConfigError(CommonError, ValueError):
    """A config file is unreadable, or a key has a value of the wrong kind."""


@dataclass(frozen=True, slots=True)
class Field:
    """One config key: its type, default, help text and optional checks.

    ``check`` returns ``None`` when the (converted) value is fine, else what was expected.
    ``schema`` validates a ``dict`` field as a nested section.
    """

    name: str
    type: FieldType
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    schema: tuple[Field, ...] | None = None


Schema = Sequence[Field]

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class _Invalid(Exception):
    """A value could not be converted to the field's type."""


def _to_str(value: Any) -> str:
    # YAML reads an unquoted serial number such as 1234 as an int; the user meant a string.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise _Invalid


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _Invalid from None
    raise _Invalid


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Invalid
    try:
        number = float(value) if isinstance(value, (int, float, str)) else math.nan
    except ValueError:
        raise _Invalid from None
    if not math.isfinite(number):
        raise _Invalid
    return number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _Invalid


def _to_str_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _Invalid
    return [_to_str(item) for item in value]


def _to_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _Invalid
    return list(value)


def _to_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid
    return {str(key): item for key, item in value.items()}


def _to_path(value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise _Invalid
    return str(os.fspath(value))


def _to_port(value: Any) -> int:
    port = _to_int(value)
    if not 1 <= port <= 65535:
        raise _Invalid
    return port


def _to_str_or_list(value: Any) -> str | list[str]:
    if isinstance(value, list):
        if not value:
            raise _Invalid
        return _to_str_list(value)
    return _to_str(value)


_CONVERTERS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "str": (_to_str, "a string"),
    "int": (_to_int, "an integer"),
    "float": (_to_float, "a number"),
    "bool": (_to_bool, "true or false"),
    "list": (_to_list, "a list"),
    "list[str]": (_to_str_list, "a list of strings"),
    "dict": (_to_dict, "a mapping"),
    "path": (_to_path, "a file or directory path"),
    "port": (_to_port, "a port number 1-65535"),
    "str|list[str]": (_to_str_or_list, "a string or a non-empty list of strings"),
}


def describe(field: Field) -> str:
    """What a value of ``field`` must look like, in words."""
    if field.choices is not None:
        return "one of " + ", ".join(repr(choice) for choice in field.choices)
    return _CONVERTERS[field.type][1]


def _fail(source: str, key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{source}: key '{key}': expected {expected}, got {value!r}")


def _convert(field: Field, value: Any, source: str, key: str) -> Any:
    converter, expected = _CONVERTERS[field.type]
    try:
        converted = converter(value)
    except _Invalid:
        raise _fail(source, key, expected, value) from None
    if field.choices is not None and converted not in field.choices:
        raise _fail(source, key, describe(field), value)
    if field.check is not None:
        problem = field.check(converted)
        if problem is not None:
            raise _fail(source, key, problem, value)
    return converted


def _resolve(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return os.path.normpath(path if path.is_absolute() else base / path)


def validate(
    data: Mapping[str, Any],
    schema: Schema,
    *,
    source: str,
    base_dir: Path,
    prefix: str = "",
    sources: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check ``data`` against ``schema``; defaults filled in, relative paths made absolute.

    Relative paths resolve against the ``root_dir`` key when the schema has one (itself
    resolved against ``base_dir``), else against ``base_dir``. ``sources`` names where
    particular top-level keys came from, for error messages (default: ``source``).
    """
    where = dict(sources or {})
    known = {field.name for field in schema}
    for key in data:
        if key not in known:
            # Salt users carry keys we do not know; they are ignored, not fatal.
            log.warning("config.unknown_key", source=where.get(key, source), key=prefix + key)
    out: dict[str, Any] = {}
    for field in schema:
        value = data.get(field.name)
        if value is None:
            value = copy.deepcopy(field.default)
        if value is not None:
            value = _convert(field, value, where.get(field.name, source), prefix + field.name)
        out[field.name] = value
    root = base_dir
    if "root_dir" in known and out.get("root_dir") is not None:
        out["root_dir"] = _resolve(out["root_dir"], base_dir)
        root = Path(out["root_dir"])
    for field in schema:
        value = out[field.name]
        if field.type == "path" and value is not None and field.name != "root_dir":
            out[field.name] = _resolve(value, root)
        elif field.schema is not None and isinstance(value, dict):
            out[field.name] = validate(
                value, field.schema, source=where.get(field.name, source), base_dir=root,
                prefix=f"{prefix}{field.name}.",
            )
    return out


def read_yaml(path: Path, *, missing_ok: bool = False) -> dict[str, Any]:
    """A config file's top-level mapping (empty for an empty file, or a missing one when
    ``missing_ok``); ConfigError naming the file when it is unreadable or not a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        if missing_ok:
            return {}
        raise ConfigError(f"{path}: cannot read the config file: {err}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config file: {err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys to values at the top level, "
            f"got {type(data).__name__}"
        )
    return {str(key): value for key, value in data.items()}


def load(
    path: Path | str | None,
    schema: Schema,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Read the YAML file at ``path`` (if any), apply ``overrides`` on top, validate.

    Overrides (from the command line or code) replace whole top-level keys.
    Raises :class:`ConfigError` naming the file, the key and what was expected.
    """
    data: dict[str, Any] = {}
    source, base_dir = "defaults", Path.cwd()
    if path is not None:
        path = Path(path)
        data = read_yaml(path)
        source, base_dir = str(path), path.resolve().parent
    overrides = overrides or {}
    merged = {**data, **{str(key): value for key, value in overrides.items()}}
    sources = {str(key): "overrides" for key in overrides}
    return validate(merged, schema, source=source, base_dir=base_dir, sources=sources)
