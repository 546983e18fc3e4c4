"""Salt's grain lookup and grain matching over nested dicts and lists, as pure functions.

``traverse`` is how ``grains.get`` and ``G@`` read ``a:b:0``; ``subdict_match`` is how a
grain target matches (``salt/utils/data.py`` semantics): both sides lowercased, the deepest
key tried first (``a:b:c`` tries key ``a:b`` then ``a``), a list matches if any element does,
a dict matches by key, and ``*:value`` searches every grain.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_DELIMITER", "subdict_match", "traverse"]

DEFAULT_DELIMITER = ":"


def traverse(data: Any, key: str, default: Any = None,
             delimiter: str = DEFAULT_DELIMITER) -> Any:
    """The value at ``key`` (``a:b:0``) inside nested dicts and lists, else ``default``.

    A list step takes a numeric index, or else looks the key up in the dicts the list holds;
    a dict step that misses retries with the key read as a number or boolean, so ``3`` finds
    an integer key.
    """
    node = data
    for part in key.split(delimiter):
        found, node = _step(node, part)
        if not found:
            return default
    return node


def subdict_match(data: Mapping[str, Any], expr: str, delimiter: str = DEFAULT_DELIMITER, *,
                  regex: bool = False) -> bool:
    """True when grain target ``expr`` (``key:value``, nested keys allowed) matches ``data``;
    the value is a glob, or with ``regex`` a regular expression matched at the start."""
    parts = expr.split(delimiter)
    if len(parts) == 1:
        return False
    # Deepest key first: 'a:b:c' tries key 'a:b' with value 'c', then key 'a' with 'b:c'.
    for cut in range(len(parts) - 1, 0, -1):
        key = delimiter.join(parts[:cut])
        if key == "*":
            value, pattern = data, expr
        else:
            value, pattern = traverse(data, key, {}, delimiter), delimiter.join(parts[cut:])
        if value == {}:
            continue
        if _value_match(value, pattern, regex):
            return True
    return False


def _value_match(value: Any, pattern: str, regex: bool) -> bool:
    if isinstance(value, Mapping):
        return _dict_match(value, pattern, regex)
    if isinstance(value, (list, tuple)):
        return any((isinstance(member, Mapping) and _dict_match(member, pattern, regex))
                   or _scalar_match(member, pattern, regex) for member in value)
    return _scalar_match(value, pattern, regex)


def _scalar_match(value: Any, pattern: str, regex: bool) -> bool:
    # Salt lowercases the pattern too, regex or glob: kept so a stock master selects the same.
    target, wanted = str(value).lower(), str(pattern).lower()
    if regex:
        try:
            return re.match(wanted, target) is not None
        except re.error:
            return False
    return fnmatch.fnmatchcase(target, wanted)


def _dict_match(value: Mapping[str, Any], pattern: str, regex: bool) -> bool:
    wildcard = pattern.startswith("*:")
    if wildcard:
        pattern = pattern[2:]
    if pattern == "*" or pattern in value:
        return True
    if any(_scalar_match(key, pattern, regex) for key in value):
        return True
    # Salt recurses with its default ':' whatever delimiter the target used.
    if subdict_match(value, pattern, DEFAULT_DELIMITER, regex=regex):
        return True
    if wildcard:
        return any(_wildcard_member(member, pattern, regex) for member in value.values())
    return False


def _wildcard_member(member: Any, pattern: str, regex: bool) -> bool:
    if isinstance(member, Mapping):
        return _dict_match(member, pattern, regex)
    if isinstance(member, list):
        return any(_scalar_match(item, pattern, regex) for item in member)
    return _scalar_match(member, pattern, regex)


def _step(node: Any, part: str) -> tuple[bool, Any]:
    if isinstance(node, list):
        return _list_step(node, part)
    try:
        return True, node[part]
    except KeyError:
        pass
    except (TypeError, IndexError):
        return False, None
    scalar = _scalar_key(part)
    if scalar is _NO_KEY:
        return False, None
    try:
        return True, node[scalar]
    except (KeyError, TypeError):
        return False, None


def _list_step(node: list[Any], part: str) -> tuple[bool, Any]:
    index: int | str
    try:
        index = int(part)
    except ValueError:
        index = part
    for embedded in node:
        if isinstance(embedded, dict) and index in embedded:
            return True, embedded[index]
    if isinstance(index, str):
        return False, None
    try:
        return True, node[index]
    except IndexError:
        return False, None


_NO_KEY = object()


def _scalar_key(part: str) -> object:
    """The key read as YAML would read a number, boolean or null; _NO_KEY if it stays text."""
    lowered = part.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    for kind in (int, float):
        try:
            return kind(part)
        except ValueError:
            continue
    return _NO_KEY
