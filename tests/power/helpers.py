"""Test doubles that are real code: the hil MCU simulator behind the agent's PowerMcu
Protocol (both codecs in the loop, no serial port), a recording event sink, shared clocks."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.minion.clock import ManualClock
from autopi_agent.power import protocol
from autopi_agent.power.errors import McuRefused, McuTimeout
from autopi_agent.power.protocol import Frame, McuStatus, SleepRequest
from hil.mcu import PowerMcuSim

STUBS = Path(__file__).resolve().parent.parent / "stubs"


class HilClock:
    """The hil Clock protocol over the agent's ManualClock: one time for both sides."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    def now(self) -> float:
        return self.clock.monotonic()


class SimLinkMcu:
    """The agent's codec talking to the hil simulator's ``handle`` directly."""

    def __init__(self, sim: PowerMcuSim) -> None:
        self.sim = sim
        self.seq = 0
        self.sent: list[bytes] = []
        self.boot_reason: str | None = None
        self.closed = False

    def _ask(self, frame: Frame) -> Frame:
        wire = protocol.encode(frame)
        self.sent.append(wire)
        reply = self.sim.handle(wire)
        if reply is None:
            raise McuTimeout("the simulated MCU did not answer (the Pi is unpowered)")
        decoded = protocol.decode(reply)
        assert decoded.seq == frame.seq
        if decoded.verb == "ERR":
            raise McuRefused(str(decoded.get("code")))
        return decoded

    def _next(self) -> int:
        self.seq = self.seq % 255 + 1
        return self.seq

    def status(self) -> McuStatus:
        return protocol.parse_status(self._ask(protocol.status_frame(self._next())))

    def heartbeat(self, timeout: float) -> float:
        return protocol.parse_heartbeat(self._ask(protocol.heartbeat_frame(self._next(), timeout)))

    def sleep(self, request: SleepRequest) -> None:
        self._ask(protocol.sleep_frame(self._next(), request))

    def hibernate(self, delay: float) -> None:
        self._ask(protocol.hibernate_frame(self._next(), delay))

    def close(self) -> None:
        self.closed = True


class RecordingEvents:
    """A VehicleEvents stand-in that keeps what was emitted (and whether it was awaited)."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()

    def emit(self, name: str, data: Mapping[str, Any] | None = None) -> bool:
        with self._lock:
            self.emitted.append((name, dict(data or {}), False))
        return True

    async def emit_now(self, name: str, data: Mapping[str, Any] | None = None) -> bool:
        await asyncio.sleep(0)
        with self._lock:
            self.emitted.append((name, dict(data or {}), True))
        return True

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _, _ in self.emitted]

    def data(self, name: str) -> dict[str, Any]:
        with self._lock:
            return next(data for n, data, _ in self.emitted if n == name)


def stub_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the stub systemctl first on PATH; returns its state dir (calls.log)."""
    state = tmp_path / "stub-state"
    (state / "services").mkdir(parents=True)
    (state / "calls.log").touch()
    monkeypatch.setenv("PATH", f"{STUBS}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_STATE", str(state))
    return state


def calls(state: Path) -> list[str]:
    return (state / "calls.log").read_text().splitlines()
