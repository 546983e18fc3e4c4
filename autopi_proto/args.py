"""Salt's command-line argument conventions: YAML-ish values and ``key=value`` keywords."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

# '==' is not an assignment. No newline in the value (Salt leaves those alone).
KEY_VALUE = re.compile(r"(?P<key>[^\W\d][\w.-]*)=(?!=)(?P<value>.*)")


def yaml_value(text: str) -> Any:
    """``text`` read as a YAML scalar, list or mapping where Salt's CLI would read it so."""
    stripped = text.strip()
    if stripped in ("", "---", "...") or any(char in text for char in "\t\r\n"):
        return text
    if "_" in stripped and all(char in "0123456789_" for char in stripped):
        return text  # YAML would read 1_000 as 1000; a name like 2024_01 must stay text
    if text == "None":
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if "#" in text and (value is None or isinstance(value, str)):
        return text  # '#' would start a comment and eat the rest
    if isinstance(value, dict):
        return value if stripped.startswith("{") else text
    if isinstance(value, list):
        return value if stripped.startswith("[") else text
    if value is None:
        return text if text == "!" else None
    if value == "" and text in ("|", "!"):
        return text
    return value if isinstance(value, (str, int, float)) else text  # dates etc. stay text


def cli_arguments(words: Sequence[str]) -> list[Any]:
    """Command-line words as Salt's wire ``arg``: values, then one ``__kwarg__`` dict."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for word in words:
        match = KEY_VALUE.fullmatch(word)
        if match:
            kwargs[match["key"]] = yaml_value(match["value"])
        else:
            args.append(yaml_value(word))
    if kwargs:
        args.append({"__kwarg__": True, **kwargs})
    return args
