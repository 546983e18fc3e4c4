"""Config drop-ins: ``<config dir>/<name>.d/*.yaml`` merged over the main file, in name order.

``agent.yaml`` gets its drop-ins from ``agent.d/`` (``*.yaml`` and, for Salt habits,
``*.conf``; hidden files and anything else are ignored). A drop-in is merged section by
section: ``power: {sleep_after: 600}`` in a drop-in changes that one setting and keeps the
rest of the main file's ``power:`` section; a list or a plain value replaces the one below.
The agent.config state writes ``50-states.yaml``; an operator's own drop-ins can sort after
it (``90-local.yaml``) to win over what the master sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopi_common.config import ConfigError, Schema, read_yaml, validate

__all__ = ["dropin_dir", "dropin_files", "load_layers", "merge_settings", "read_settings"]

_SUFFIXES = (".yaml", ".conf")


def dropin_dir(conf_file: Path | str) -> Path:
    """The drop-in directory of a config file: ``agent.yaml`` -> ``agent.d``."""
    path = Path(conf_file)
    return path.with_name(f"{path.stem}.d")


def dropin_files(conf_file: Path | str) -> list[Path]:
    """The drop-ins merged over ``conf_file``, in name order."""
    folder = dropin_dir(conf_file)
    if not folder.is_dir():
        return []
    return sorted((entry for entry in folder.iterdir()
                   if entry.suffix in _SUFFIXES and not entry.name.startswith(".")
                   and entry.is_file()), key=lambda entry: entry.name)


def merge_settings(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: sections (mappings) merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in update.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_settings(current, value)
        else:
            merged[key] = value
    return merged


def read_settings(path: Path) -> dict[str, Any]:
    """One config file or drop-in as a mapping (an absent file is empty); ConfigError naming
    the file when it is not readable YAML or not a mapping."""
    return read_yaml(path, missing_ok=True)


def load_layers(conf_file: Path, schema: Schema, overrides: Mapping[str, Any] | None = None,
                replace: Mapping[Path, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The main file, its drop-ins, then ``overrides`` (whole keys), validated by ``schema``.

    ``replace`` stands in for drop-ins (present or not) with the given settings: how a state
    checks a drop-in before writing it. Errors name the file a bad key came from.
    """
    if not conf_file.is_file():
        raise ConfigError(f"{conf_file}: the config file does not exist")
    data = read_settings(conf_file)
    layers: dict[Path, Mapping[str, Any] | None] = {path: None for path in dropin_files(conf_file)}
    layers.update(dict(replace or {}))
    sources: dict[str, str] = {}
    for path in sorted(layers, key=lambda entry: entry.name):
        layer = layers[path]
        settings = read_settings(path) if layer is None else dict(layer)
        data = merge_settings(data, settings)
        sources.update({key: str(path) for key in settings})
    data.update({str(key): value for key, value in (overrides or {}).items()})
    sources.update({str(key): "overrides" for key in overrides or {}})
    return validate(data, schema, source=str(conf_file), base_dir=conf_file.resolve().parent,
                    sources=sources)
