"""Golden vectors for the power MCU line protocol: the agent's codec and the hil simulator's
codec must both produce and accept exactly these lines, and both must ignore noise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.power import protocol
from autopi_agent.power.errors import McuProtocolError
from autopi_agent.power.protocol import Frame, SleepRequest
from hil import mcu_codec

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p for p in GOLDEN.glob("*.json") if p.name != "noise.json")
NOISE = json.loads((GOLDEN / "noise.json").read_text())["lines"]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_both_codecs_encode_the_golden_line(path: Path) -> None:
    case = load(path)
    fields = tuple((k, v) for k, v in case["fields"])
    wire = case["wire"].encode("ascii")
    assert protocol.encode(Frame(case["seq"], case["verb"], fields)) == wire
    assert mcu_codec.render(mcu_codec.McuFrame(case["seq"], case["verb"], fields)) == wire


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_both_codecs_decode_the_golden_line(path: Path) -> None:
    case = load(path)
    fields = tuple((k, v) for k, v in case["fields"])
    wire = case["wire"].encode("ascii")
    assert protocol.decode(wire) == Frame(case["seq"], case["verb"], fields)
    assert mcu_codec.parse(wire) == mcu_codec.McuFrame(case["seq"], case["verb"], fields)


@pytest.mark.parametrize("line", NOISE)
def test_noise_is_never_a_frame(line: str) -> None:
    raw = line.encode("latin-1")
    with pytest.raises(McuProtocolError):
        protocol.decode(raw)
    assert mcu_codec.parse(raw) is None


def test_one_flipped_bit_fails_the_checksum() -> None:
    wire = bytearray(protocol.encode(protocol.heartbeat_frame(9, 120)))
    wire[4] ^= 0x01  # "H" -> "I": still a valid-looking verb
    with pytest.raises(McuProtocolError, match="checksum"):
        protocol.decode(bytes(wire))
    assert mcu_codec.parse(bytes(wire)) is None


def test_request_builders_give_the_documented_fields() -> None:
    sleep = protocol.sleep_frame(3, SleepRequest(30, ("ignition", "timer"), 7200.4))
    assert sleep.fields == (("delay", "30"), ("wake", "ignition,timer"), ("timer", "7200"))
    rise = protocol.sleep_frame(4, SleepRequest(0, ("voltage_rise",), voltage_rise=0.25))
    assert rise.get("rise") == "0.25"
    with pytest.raises(McuProtocolError, match="wake triggers"):
        protocol.sleep_frame(5, SleepRequest(0, ("moonrise",)))
    with pytest.raises(McuProtocolError):
        protocol.sleep_frame(5, SleepRequest(0, ()))


def test_status_reply_parses_and_rejects_missing_fields() -> None:
    reply = load(GOLDEN / "status-reply.json")["wire"].encode()
    status = protocol.parse_status(protocol.decode(reply))
    assert (status.battery_voltage, status.ignition, status.uptime) == (12.6, False, 42.0)
    assert status.wake_reason == "power_on" and status.watchdog == 0.0
    with pytest.raises(McuProtocolError, match="v= field"):
        protocol.parse_status(Frame(1, "OK", (("ign", "1"),)))
    with pytest.raises(McuProtocolError, match="not 0 or 1"):
        protocol.parse_status(Frame(1, "OK", (("v", "12"), ("ign", "yes"), ("up", "1"), ("wd", "0"))))


def test_encoder_refuses_what_the_line_cannot_carry() -> None:
    with pytest.raises(McuProtocolError):
        protocol.encode(Frame(1, "HB", (("t", "1 2"),)))
    with pytest.raises(McuProtocolError):
        protocol.encode(Frame(256, "HB"))
    with pytest.raises(McuProtocolError):
        protocol.encode(Frame(1, "HB", (("t", "9" * 200),)))


def test_line_splitter_drops_overlong_runs_and_keeps_the_next_line() -> None:
    good = protocol.encode(protocol.status_frame(1))
    splitter, hil_lines = protocol.LineSplitter(), mcu_codec.Lines()
    data = b"x" * 500 + b"\n" + good[:5]
    assert splitter.feed(data) == [] and hil_lines.feed(data) == []
    rest = good[5:]
    assert splitter.feed(rest) == [good.rstrip(b"\r\n")]
    assert hil_lines.feed(rest) == [good.rstrip(b"\n")]
