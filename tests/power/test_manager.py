"""The power manager's runner on a ManualClock, against the hil MCU simulator (both codecs)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.minion.clock import ManualClock
from autopi_agent.minion.loggers import VehicleGate
from autopi_agent.power.manager import PowerHooks, PowerManager
from autopi_agent.power.settings import PowerSettings
from autopi_agent.power.store import PowerStore
from hil import PowerSim
from hil.mcu import PowerMcuSim
from tests.inproc import until
from tests.power.helpers import HilClock, RecordingEvents, SimLinkMcu, calls, stub_state

BASE = {"enabled": True, "sleep_after": 60, "poll_interval": 1, "heartbeat_interval": 5,
        "watchdog_timeout": 30, "power_off_delay": 10, "flush_timeout": 7,
        "low_voltage_hold": 40, "critical_hold": 5, "wake_triggers": ["ignition", "timer"],
        "wake_timer": 3600, "shutdown_command": ["systemctl", "poweroff"]}


class Rig:
    """A manager wired to a simulated MCU, a recording event sink and recording hooks."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        self.clock = ManualClock()
        self.power = PowerSim(HilClock(self.clock))
        self.power.override(battery_voltage=12.6, ignition=False)
        self.sim = PowerMcuSim(self.power, HilClock(self.clock))
        self.events = RecordingEvents()
        self.gate = VehicleGate()
        self.order: list[Any] = []
        settings = PowerSettings.from_opts({**BASE, **overrides})
        hooks = PowerHooks(self.stop_loggers, self.flush,
                           {"vehicle_events": self.events, "vehicle_gate": self.gate})
        self.store = PowerStore(tmp_path / "power", 50)
        self.manager = PowerManager(settings, SimLinkMcu(self.sim), self.store, hooks,
                                    clock=self.clock)

    async def stop_loggers(self) -> None:
        self.order.append("loggers stopped")

    async def flush(self, budget: float) -> bool:
        self.order.append(("flushed", budget, self.events.names()[-1]))
        return True

    async def advance(self, seconds: float) -> None:
        """Move time once the manager waits on the clock (its MCU calls run in threads)."""
        await until(lambda: self.clock.sleepers > 0 or self.manager.machine.down)
        await self.clock.advance(seconds, settle=3.0)

    async def finish(self, task: asyncio.Task[None]) -> None:
        await asyncio.wait_for(task, 30)


def test_ignition_off_then_sleep_timer_puts_the_dongle_to_sleep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stubs = stub_state(tmp_path, monkeypatch)
    rig = Rig(tmp_path)

    async def scenario() -> None:
        task = asyncio.create_task(rig.manager.run())
        await rig.advance(1)
        assert rig.events.names() == ["power/wake"]
        assert rig.events.data("power/wake")["reason"] == "power_on"
        rig.power.override(ignition=True, battery_voltage=14.2)
        await rig.advance(2)
        assert rig.gate.engine_running is True
        assert rig.events.names()[1:] == ["ignition/on", "engine/start"]
        await rig.advance(100)  # driving: heartbeats keep the watchdog fed
        assert rig.sim.watchdog_resets == 0 and rig.sim.watchdog_timeout == 30
        rig.power.override(ignition=False, battery_voltage=12.7)
        await rig.advance(2)
        assert rig.gate.engine_running is False
        assert rig.events.names()[-2:] == ["ignition/off", "engine/stop"]
        await rig.advance(50)
        assert rig.sim.requests == [] and not task.done()
        assert rig.manager.status()["sleep_in"] == pytest.approx(9, abs=1.5)
        await rig.advance(15)
        await rig.finish(task)

    asyncio.run(scenario())
    assert rig.order == ["loggers stopped", ("flushed", 7.0, "power/sleep")]
    name, data, awaited = rig.events.emitted[-1]
    assert (name, awaited) == ("power/sleep", True)
    assert data["mode"] == "sleep" and data["reason"] == "engine_off"
    assert data["wake_triggers"] == ["ignition", "timer"] and data["wake_timer"] == 3600
    request = rig.sim.requests[-1]
    assert (request.kind, request.wake, request.timer, request.delay) == (
        "sleep", ("ignition", "timer"), 3600, 10)
    assert calls(stubs) == ["systemctl poweroff"]
    assert rig.manager.halted.is_set()
    history = [entry["event"] for entry in rig.store.history()]
    assert history == ["power/wake", "ignition/on", "engine/start", "ignition/off",
                       "engine/stop", "power/sleep"]


def test_battery_sag_hibernates_and_a_short_blip_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stubs = stub_state(tmp_path, monkeypatch)
    rig = Rig(tmp_path, sleep_after=0)

    async def scenario() -> None:
        task = asyncio.create_task(rig.manager.run())
        await rig.advance(1)
        rig.power.override(battery_voltage=12.0)
        await rig.advance(20)
        rig.power.override(battery_voltage=12.5)  # a blip shorter than the 40 s hold
        await rig.advance(60)
        assert rig.sim.requests == [] and "battery/low" not in rig.events.names()
        rig.power.override(battery_voltage=12.0)
        await rig.advance(45)
        await rig.finish(task)

    asyncio.run(scenario())
    assert "battery/low" in rig.events.names()
    assert rig.events.data("power/sleep")["mode"] == "hibernate"
    assert rig.sim.requests[-1].kind == "hibernate"
    assert rig.sim.requests[-1].wake == ("ignition",)
    assert calls(stubs) == ["systemctl poweroff"]


def test_critical_voltage_shuts_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stubs = stub_state(tmp_path, monkeypatch)
    rig = Rig(tmp_path)

    async def scenario() -> None:
        task = asyncio.create_task(rig.manager.run())
        await rig.advance(1)
        rig.power.override(battery_voltage=11.5, ignition=True)
        await rig.advance(7)
        await rig.finish(task)

    asyncio.run(scenario())
    assert "battery/critical" in rig.events.names()
    data = rig.events.data("power/sleep")
    assert (data["mode"], data["reason"]) == ("shutdown", "critical_voltage")
    assert calls(stubs) == ["systemctl poweroff"]


def test_requested_sleep_with_interval_and_wake_announced_once_per_boot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stubs = stub_state(tmp_path, monkeypatch)
    rig = Rig(tmp_path, sleep_after=0, wake_triggers=["voltage_rise"])

    async def scenario() -> None:
        task = asyncio.create_task(rig.manager.run())
        await rig.advance(1)
        planned = rig.manager.request("sleep", delay=5, interval=600)
        assert planned["wake_triggers"] == ["voltage_rise", "timer"]
        await rig.advance(6)
        await rig.finish(task)

    asyncio.run(scenario())
    request = rig.sim.requests[-1]
    assert (request.wake, request.timer, request.voltage_rise) == (("voltage_rise", "timer"), 600, 0.5)
    assert calls(stubs) == ["systemctl poweroff"]
    again = Rig(tmp_path)  # the agent restarts in the same boot: no second power/wake

    async def restart() -> None:
        task = asyncio.create_task(again.manager.run())
        await again.advance(1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(restart())
    assert "power/wake" not in again.events.names()
