"""The ``highstate`` output: a state run's return as text laid out like Salt's highstate outputter.

Pure: a return in, text out. Each state shows ID, Function, Name (when it differs from the
ID), Result, Comment, Started, Duration and Changes, in run order; a summary counts
succeeded (with ``unchanged=`` for test runs and ``changed=``), failed, states run and the
total run time. A list return (compile errors) prints as "Data failed to compile".
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from numbers import Number
from typing import Any

__all__ = ["render_highstate", "render_host"]

_CYAN, _GREEN, _RED, _YELLOW, _LIGHT_YELLOW = ("\033[0;36m", "\033[0;32m", "\033[0;31m",
                                               "\033[0;33m", "\033[1;33m")
_LIGHT_RED = "\033[1;31m"
_RESET = "\033[0m"
_PAD = " " * 14


class _Paint:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text


def render_highstate(returns: Mapping[str, Any], *, color: bool = False) -> str:
    """Every minion's state return, ``{minion_id: ret}``, as highstate text (no final newline)."""
    return "\n".join(render_host(host, ret, color=color) for host, ret in returns.items())


def render_host(host: str, ret: Any, *, color: bool = False) -> str:
    """One minion's state return as highstate text."""
    paint = _Paint(color)
    safe_host = _safe(str(host))
    if isinstance(ret, list):
        lines = [paint(_RED, f"{safe_host}:"), paint(_RED, "    Data failed to compile:")]
        lines += [paint(_RED, f"----------\n    {_safe(str(error))}") for error in ret]
        return "\n".join(lines)
    if not isinstance(ret, Mapping):
        return paint(_GREEN, f"{safe_host}:") + "\n" + paint(_GREEN, f"    {_safe(str(ret))}")
    states = [(tag, data) for tag, data in ret.items()
              if isinstance(data, Mapping) and "result" in data]
    states.sort(key=lambda item: item[1].get("__run_num__", 0))
    lines = [paint(_GREEN, f"{safe_host}:")]
    counts: dict[Any, int] = {}
    changed = 0
    warned = 0
    durations: list[float] = []
    for tag, data in states:
        warned += bool(data.get("warnings"))
        counts[data["result"]] = counts.get(data["result"], 0) + 1
        durations.append(_duration(data.get("duration", 0)))
        has_changes = bool(data.get("changes"))
        changed += has_changes
        lines += _state_lines(tag, data, has_changes, paint)
    lines += _summary(safe_host, counts, changed, sum(durations), paint, warned)
    return "\n".join(lines)


def _state_lines(tag: str, data: Mapping[str, Any], has_changes: bool,
                 paint: _Paint) -> list[str]:
    parts = str(tag).split("_|-")
    state, id_, name, fun = (parts + ["", "", "", ""])[:4]
    result = data["result"]
    tint = _RED if result is False else _LIGHT_YELLOW if result is None else (
        _CYAN if has_changes else _GREEN)
    comment = data.get("comment", "")
    if isinstance(comment, (list, tuple)):
        comment = "\n".join(str(item) for item in comment)
    comment = _safe(str(comment)).strip().replace("\n", "\n" + _PAD)
    duration = data.get("duration", "")
    rows = ["----------", f"          ID: {_safe(id_)}", f"    Function: {state}.{fun}"]
    if id_ != name:
        rows.append(f"        Name: {_safe(name)}")
    rows += [f"      Result: {result}", f"     Comment: {comment}"]
    if "start_time" in data:
        rows += [f"     Started: {data['start_time']}",
                 f"    Duration: {duration} ms" if duration != "" else "    Duration: "]
    changes = data.get("changes") or {}
    text = "     Changes:   "
    if changes:
        text += "\n" + "\n".join(_nested(changes, 14, "")) if isinstance(changes, Mapping) \
            else f"Invalid Changes data: {_safe(str(changes))}"
    rows.append(text)
    painted = [paint(tint, row) for row in rows]
    if data.get("warnings"):
        # Salt's layout: wrapped at 80 columns, continuation lines under the first.
        wrapper = textwrap.TextWrapper(width=80, initial_indent=" " * 14,
                                       subsequent_indent=" " * 14)
        text = wrapper.fill("\n".join(_safe(str(w)) for w in data["warnings"])).lstrip()
        painted.append(paint(_LIGHT_RED, f"    Warnings: {text}"))
    return painted


def _summary(host: str, counts: Mapping[Any, int], changed: int, total_ms: float,
             paint: _Paint, warned: int = 0) -> list[str]:
    labels = {True: "Succeeded", False: "Failed", None: "Not Run"}
    width = max(len(label) for label in labels.values()) + \
        max([len(str(count)) for count in counts.values()] or [0]) + 2
    stats = []
    if counts.get(None, 0):
        stats.append(f"unchanged={counts[None]}")
    if changed:
        stats.append(f"changed={changed}")
    extra = f" ({', '.join(stats)})" if stats else ""
    succeeded = counts.get(True, 0) + counts.get(None, 0)
    failed = counts.get(False, 0)
    unit, total = ("s", total_ms / 1000) if total_ms > 999 else ("ms", total_ms)
    warnings = [paint(_LIGHT_RED, _count("Warnings", warned, width))] if warned else []
    return [
        paint(_CYAN, f"\nSummary for {host}\n{'-' * width}"),
        paint(_GREEN, _count("Succeeded", succeeded, width)) + extra,
        paint(_RED if failed else _CYAN, _count("Failed", failed, width)),
        *warnings,
        paint(_CYAN, f"{'-' * width}\nTotal states run: {sum(counts.values()):>{width - 7}}"),
        paint(_CYAN, f"Total run time: {f'{total:.3f}'.rjust(width - 5)} {unit}"),
    ]


def _count(label: str, count: int, width: int) -> str:
    return f"{label}: {count:>{width - (len(label) + 2)}}"


def _duration(value: Any) -> float:
    try:
        return float(str(value).removesuffix(" ms"))
    except ValueError:
        return 0.0


def _nested(value: Any, indent: int, prefix: str) -> list[str]:
    """Salt's nested layout, used for a state's changes."""
    pad = " " * indent
    if value is None or isinstance(value, bool) or isinstance(value, Number):
        return [pad + prefix + (str(value) if not isinstance(value, float) else repr(value))]
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return [pad + (prefix if number == 0 else " " * len(prefix)) + _safe(line)
                for number, line in enumerate(value.splitlines())]
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for item in value:
            if isinstance(item, (list, tuple, Mapping)):
                out.append(pad + "|_")
                out += _nested(item, indent + 2, "" if isinstance(item, Mapping) else "- ")
            else:
                out += _nested(item, indent, "- ")
        return out
    if isinstance(value, Mapping):
        out = [pad + "----------"] if indent else []
        try:
            keys = sorted(value)
        except TypeError:
            keys = sorted(value, key=str)
        for key in keys:
            out.append(pad + prefix + _safe(str(key)) + ":")
            out += _nested(value[key], indent + 4, "")
        return out
    return [pad + prefix + _safe(str(value))]


def _safe(text: str) -> str:
    # A return is data from a minion: never let it drive the operator's terminal.
    return text.replace("\033", "?")
