"""CLI output formatters: Salt's nested layout and JSON, raw repr, one-line table."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from cloud_master.output import render, render_one
from tests.saltvenv import salt_venv

SAMPLE: dict[str, Any] = {
    "car-2": {"speed": 42, "rpm": 850.5, "vin": "WBA123", "dtcs": [], "ok": True},
    "car-1": ["P0300", {"code": "P0171", "text": "System too lean\nBank 1"}, [1, 2]],
    "car-3": None,
}

NESTED = """\
car-1:
    - P0300
    |_
      ----------
      code:
          P0171
      text:
          System too lean
          Bank 1
    |_
      - 1
      - 2
car-2:
    ----------
    dtcs:
    ok:
        True
    rpm:
        850.5
    speed:
        42
    vin:
        WBA123
car-3:
    None"""


def test_nested_layout() -> None:
    assert render(SAMPLE, "yaml") == NESTED
    assert render(SAMPLE, "nested") == NESTED


def test_nested_one_minion() -> None:
    assert render_one("car-9", True, "yaml") == "car-9:\n    True"
    assert render_one("car-9", "line one\nline two") == "car-9:\n    line one\n    line two"


def test_nested_bytes_and_odd_keys() -> None:
    assert render_one("m", b"text") == "m:\n    text"
    assert render_one("m", b"\xff\x00") == "m:\n    b'\\xff\\x00'"
    assert render_one("m", {2: "b", "a": 1}) == "m:\n    ----------\n    2:\n        b\n    a:\n        1"


def test_nested_colour_only_when_asked() -> None:
    plain = render_one("m", {"k": "v"})
    coloured = render_one("m", {"k": "v"}, color=True)
    assert "\033[" not in plain
    assert "\033[0;36mk\033[0m:" in coloured


def test_escape_sequences_from_a_minion_are_neutralised() -> None:
    hostile = {"k\033[2J": "v\033]0;pwned\007"}
    for fmt in ("yaml", "table", "json", "raw"):
        assert "\033" not in render({"m": hostile}, fmt)


def test_json_like_salt_static() -> None:
    text = render({"car-1": True, "car-2": {"b": [1, 2]}}, "json")
    assert text == '{\n    "car-1": true,\n    "car-2": {\n        "b": [\n            1,\n' \
                   '            2\n        ]\n    }\n}'
    assert json.loads(render(SAMPLE, "json")) == SAMPLE


def test_json_keeps_unicode_and_reprs_bytes() -> None:
    assert render({"m": "ünï"}, "json") == '{\n    "m": "ünï"\n}'
    assert json.loads(render({"m": b"ab"}, "json")) == {"m": "b'ab'"}


def test_raw_is_a_repr_per_minion() -> None:
    text = render({"car-1": True, "car-2": {"a": b"x"}}, "raw")
    assert text == "{'car-1': True}\n{'car-2': {'a': b'x'}}"
    assert render_one("car-1", [1], "raw") == "{'car-1': [1]}"


def test_table() -> None:
    text = render({"car-10": {"b": 1, "a": [1, 2]}, "c1": "two\nlines", "car-2": None}, "table")
    assert text.splitlines() == [
        "MINION | RETURN",
        "-------+-------",
        "c1     | \"two\\nlines\"",
        "car-10 | {\"b\":1,\"a\":[1,2]}",
        "car-2  | None",
    ]


def test_table_row_streaming() -> None:
    assert render_one("car-1", 12.5, "table", id_width=8) == "car-1    | 12.5"
    assert render_one("car-1", "ok", "table") == "car-1 | ok"


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown output format 'xml'"):
        render({}, "xml")
    with pytest.raises(ValueError, match="unknown output format"):
        render_one("m", 1, "xml")


ORACLE = """
import json, sys
import salt.output.nested as nested
import salt.output.json_out as json_out
nested.__opts__ = {"color": False, "color_theme": None, "strip_colors": True}
json_out.__opts__ = {}
req = json.load(sys.stdin)
mod = nested if req["fmt"] == "nested" else json_out
sys.stdout.write(json.dumps(mod.output(req["data"])))
"""

ORACLE_CASES: list[dict[str, Any]] = [
    SAMPLE,
    {"m": {"a": {"b": {"c": [[], {}, "", 0, False, -1.25e-7]}}}},
    {"m": [[["deep"]], {"x": [{"y": None}]}], "a": "  leading spaces\n\ttab"},
    {"m": {"state_|-pkg_|-vim_|-installed": {"result": True, "changes": {}, "comment": ""}}},
]


@pytest.mark.salt
@pytest.mark.parametrize("case", range(len(ORACLE_CASES)))
@pytest.mark.parametrize("fmt", ["nested", "json"])
def test_matches_salts_own_outputter(case: int, fmt: str) -> None:
    data = ORACLE_CASES[case]
    python = salt_venv() / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", ORACLE], input=json.dumps({"fmt": fmt, "data": data}),
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert render(data, "yaml" if fmt == "nested" else "json") == json.loads(done.stdout)
