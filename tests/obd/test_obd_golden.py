"""Golden vectors: raw ELM327 reply lines -> reading or typed error, one case a file.

Each case in tests/fixtures/obd/ holds the adapter's lines (written from SAE J1979 and
ISO 15765-2, not from a decoder), what the agent must make of them, and what python-OBD
0.7.3 makes of the same lines on its own (``python_obd``): where the two differ, the case
shows a trap the agent guards against and would fail without that guard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from obd import OBDCommand, Unit
from obd.elm327 import ELM327
from obd.protocols.protocol import Protocol

from autopi_agent.obd.car import decoded
from autopi_agent.obd.commands import resolve
from autopi_agent.obd.errors import ObdError
from autopi_agent.obd.frames import check_answer
from autopi_agent.obd.replies import parse_reply

CASES = sorted((Path(__file__).parent.parent / "fixtures" / "obd").glob("*.json"))
# The ECU layout a protocol object learns from the answer to 0100 (engine 7E8, gearbox 7E9).
LINES_0100 = ["7E8 06 41 00 BE 3F A8 13", "7E9 06 41 00 98 18 80 10"]


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def protocol_for(case: dict[str, Any]) -> Protocol:
    return ELM327._SUPPORTED_PROTOCOLS[case["protocol"]](LINES_0100)


def command_for(case: dict[str, Any]) -> OBDCommand:
    if "command" in case:
        return resolve(case["command"])
    return resolve(mode=case["mode"], pid=case["pid"], force=case.get("force", False))


def python_obd_alone(case: dict[str, Any]) -> Any:
    """What python-OBD's own query path (protocol parser, then the command) returns."""
    messages = protocol_for(case)(case["lines"])
    value = command_for(case)(messages).value
    if isinstance(value, Unit.Quantity):
        return float(value.magnitude)
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value)
        return text.decode("ascii") if text.isascii() and text.isalnum() else text.hex().upper()
    if isinstance(value, list):
        return [list(item) for item in value]
    return value


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_case(path: Path) -> None:
    case = load(path)
    expect = case["expect"]
    command = command_for(case)
    try:
        answer = check_answer(case["lines"], command, protocol_for(case), sent=case["sent"],
                              what=command.name)
        value, unit = decoded(command, answer, decode=case.get("decode", True))
    except ObdError as err:
        assert "error" in expect, f"unexpected {err.kind}: {err}"
        assert err.kind == expect["error"]
        assert expect.get("message", "") in str(err)
        return
    assert "error" not in expect, f"expected {expect['error']}, got {value!r}"
    assert value == (pytest.approx(expect["value"]) if isinstance(value, float)
                     else expect["value"])
    assert unit == expect.get("unit")
    assert [bytes(m.data).hex().upper() for m in answer.messages] == expect["raw"]
    ecus = [m.frames[0].raw[:3] for m in answer.messages]
    assert ecus == expect["ecus"]
    notes = list(answer.notes)
    for note in expect.get("notes", []):
        assert any(note in text for text in notes), notes
    assert parse_reply(case["lines"], echo=case["sent"]).garbled == expect.get("garbled", False)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_python_obd_alone_on_the_same_lines(path: Path) -> None:
    """Pins python-OBD's behaviour that the guards exist for (a change would show here)."""
    case = load(path)
    alone = python_obd_alone(case)
    if isinstance(alone, float):
        assert alone == pytest.approx(case["python_obd"])
    else:
        assert alone == case["python_obd"]
