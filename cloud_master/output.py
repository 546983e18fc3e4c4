"""CLI output formatters for job returns: Salt's nested look, JSON, raw repr and a table."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from numbers import Number
from typing import Any, Literal

__all__ = ["FORMATS", "OutputFormat", "render", "render_one"]

OutputFormat = Literal["yaml", "nested", "json", "raw", "table"]
FORMATS: tuple[str, ...] = ("yaml", "nested", "json", "raw", "table", "highstate")

_CYAN, _GREEN, _YELLOW, _RESET = "\033[0;36m", "\033[0;32m", "\033[1;33m", "\033[0m"
_Paint = Callable[[str, str], str]


def _paint(color: bool) -> _Paint:
    if color:
        return lambda code, text: f"{code}{text}{_RESET}"
    return lambda _code, text: text


def _safe(text: str) -> str:
    # A return is data from a minion: never let it drive the operator's terminal.
    return text.replace("\033", "?")


# -- nested ("yaml"): the layout of Salt's default outputter --------------------------


def _scalar(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, Number):
        return repr(value)
    return None


def _nested(value: Any, indent: int, prefix: str, out: list[str], paint: _Paint) -> None:
    pad = " " * indent
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            out.append(pad + prefix + paint(_YELLOW, repr(bytes(value))))
            return
    scalar = _scalar(value)
    if scalar is not None:
        out.append(pad + prefix + paint(_YELLOW, scalar))
    elif isinstance(value, str):
        for number, line in enumerate(value.splitlines()):
            lead = prefix if number == 0 else " " * len(prefix)
            out.append(pad + lead + paint(_GREEN, _safe(line)))
    elif isinstance(value, (list, tuple)):
        _nested_list(value, indent, out, paint)
    elif isinstance(value, Mapping):
        _nested_mapping(value, indent, prefix, out, paint)
    else:
        out.append(pad + prefix + paint(_GREEN, _safe(str(value))))


def _nested_list(items: list[Any] | tuple[Any, ...], indent: int, out: list[str],
                 paint: _Paint) -> None:
    for item in items:
        if isinstance(item, (list, tuple, Mapping)):
            out.append(" " * indent + paint(_GREEN, "|_"))
            _nested(item, indent + 2, "" if isinstance(item, Mapping) else "- ", out, paint)
        else:
            _nested(item, indent, "- ", out, paint)


def _nested_mapping(mapping: Mapping[Any, Any], indent: int, prefix: str, out: list[str],
                    paint: _Paint) -> None:
    pad = " " * indent
    if indent:
        out.append(pad + paint(_CYAN, "----------"))
    try:
        keys = sorted(mapping)
        items = [(key, mapping[key]) for key in keys]
    except TypeError:  # keys of mixed types: order them by their text
        items = sorted(((str(k), v) for k, v in mapping.items()), key=lambda kv: kv[0])
    for key, item in items:
        out.append(pad + prefix + paint(_CYAN, _safe(str(key))) + ":")
        _nested(item, indent + 4, "", out, paint)


def _render_nested(returns: Mapping[str, Any], color: bool) -> str:
    lines: list[str] = []
    _nested_mapping(returns, 0, "", lines, _paint(color))
    return "\n".join(lines)


# -- json, raw, table ----------------------------------------------------------------


def _json(value: Any) -> str:
    # As `salt --out json`: 4-space indent, non-ASCII kept, anything else as its repr.
    return json.dumps(value, indent=4, ensure_ascii=False, default=repr)


def _one_line(value: Any) -> str:
    if isinstance(value, str):
        return _safe(value) if "\n" not in value and "\r" not in value else json.dumps(value)
    scalar = _scalar(value)
    if scalar is not None:
        return scalar
    return _safe(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr))


def _row(minion_id: str, ret: Any, id_width: int, paint: _Paint) -> str:
    name = _safe(minion_id).ljust(id_width)
    return f"{paint(_CYAN, name)} | {_one_line(ret)}"


def _render_table(returns: Mapping[str, Any], color: bool) -> str:
    ids = sorted(returns)
    width = max([len("MINION"), *(len(i) for i in ids)])
    paint = _paint(color)
    lines = [f"{'MINION'.ljust(width)} | RETURN", f"{'-' * width}-+-{'-' * 6}"]
    lines += [_row(minion_id, returns[minion_id], width, paint) for minion_id in ids]
    return "\n".join(lines)


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")


def render(returns: Mapping[str, Any], fmt: str = "yaml", *, color: bool = False) -> str:
    """All returns of a job, ``{minion_id: ret}``, as one block of text (no final newline).

    ``yaml``/``nested``: Salt's nested layout; ``json``: one object like
    ``salt --static --out json``; ``raw``: one Python repr per minion; ``table``: a
    minion | return table, each value on one line. ``color`` only for a terminal.
    """
    _check(fmt)
    if fmt == "highstate":
        from autopi_common.sls.highout import render_highstate

        return render_highstate(returns, color=color)
    if fmt == "json":
        return _json(dict(returns))
    if fmt == "table":
        return _render_table(returns, color)
    if fmt == "raw":
        return "\n".join(repr({minion_id: ret}) for minion_id, ret in returns.items())
    return _render_nested(returns, color)


def render_one(minion_id: str, ret: Any, fmt: str = "yaml", *, color: bool = False,
               id_width: int = 0) -> str:
    """One minion's return as it arrives (``table`` rows are padded to ``id_width``)."""
    _check(fmt)
    if fmt == "table":
        return _row(minion_id, ret, id_width, _paint(color))
    return render({minion_id: ret}, fmt, color=color)
