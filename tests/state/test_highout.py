"""The highstate outputter: text identical to Salt 3008's for the same returns.

``highout/*.json`` are real salt-call returns (``warnings.json`` is ``apply.json`` with a
warning added, as an offline run carries); ``highout/*.txt`` is what Salt's own highstate
outputter printed for them (colour off).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopi_common.sls.highout import render_highstate, render_host

HIGHOUT = Path(__file__).resolve().parent / "highout"


@pytest.mark.parametrize("name", ["apply", "apply_test", "errors", "warnings"])
def test_same_text_as_salt(name: str) -> None:
    returns = json.loads((HIGHOUT / f"{name}.json").read_text())
    assert render_highstate(returns) + "\n" == (HIGHOUT / f"{name}.txt").read_text()


def test_colour_and_hostile_text() -> None:
    ret = {"cmd_|-x_|-echo \033[2J_|-run": {"result": False, "comment": "bad\033]0;t\007",
                                            "changes": {}, "__run_num__": 0, "name": "n"}}
    plain = render_host("m\033[31m", ret)
    assert "\033" not in plain and "Failed:    1" in plain
    coloured = render_host("m", ret, color=True)
    assert "\033[0;31m" in coloured and "\033[2J" not in coloured


def test_scalar_return() -> None:
    assert render_host("m", "not a state return") == "m:\n    not a state return"
