"""Scripted HIL trip end to end: a real master, the hil car and its power MCU on a pty, an
agent with power management on short timers. Ignition off -> engine stop -> sleep timer ->
power/sleep on the master's bus, the MCU asked to sleep with the wake triggers, poweroff."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil import CarConfig, SimulatedCar
from tests.inproc import running_agent, running_master, until
from tests.power.helpers import calls, stub_state


@pytest.fixture
def car() -> Iterator[SimulatedCar]:
    with SimulatedCar(CarConfig(scenario="idle", tcp_port=None, pty=False)) as simulated:
        simulated.power.override(ignition=True, battery_voltage=14.1)
        yield simulated


def test_ignition_off_sleeps_the_dongle(tmp_path: Path, car: SimulatedCar,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    stubs = stub_state(tmp_path, monkeypatch)
    power = {"enabled": True, "mcu": {"port": car.mcu_pty_path, "timeout": 5},
             "sleep_after": 1.5, "poll_interval": 0.2, "heartbeat_interval": 0.5,
             "watchdog_timeout": 60, "power_off_delay": 30, "flush_timeout": 10,
             "wake_triggers": ["ignition", "voltage_rise"], "wake_voltage_rise": 0.6,
             "shutdown_command": ["systemctl", "poweroff"]}

    async def scenario() -> None:
        async with running_master(tmp_path) as master:
            bus = master.events.subscribe("vehicle/car-0001/*")
            try:
                async with running_agent(tmp_path / "a", master, "car-0001", power=power) as agent:
                    seen: list[str] = []

                    async def wait_for_tag(suffix: str) -> dict[str, object]:
                        while True:
                            event = await asyncio.wait_for(bus.get(), 30)
                            seen.append(event.tag)
                            if event.tag == f"vehicle/car-0001/{suffix}":
                                return dict(event.data)

                    await wait_for_tag("engine/start")
                    assert agent.gate.engine_running is True
                    car.power.override(ignition=False, battery_voltage=12.6)
                    await wait_for_tag("engine/stop")
                    sleep = await wait_for_tag("power/sleep")
                    assert sleep["mode"] == "sleep" and sleep["reason"] == "engine_off"
                    assert sleep["wake_triggers"] == ["ignition", "voltage_rise"]
                    await until(lambda: agent.power.halted.is_set(), timeout=30)
                    assert "vehicle/car-0001/power/wake" in seen
                    assert agent.gate.engine_running is False
            finally:
                bus.close()

    asyncio.run(scenario())
    request = car.mcu.requests[-1]
    assert (request.kind, request.wake, request.voltage_rise, request.delay) == (
        "sleep", ("ignition", "voltage_rise"), 0.6, 30)
    assert car.mcu.describe()["pi"] == "shutting_down"
    assert calls(stubs) == ["systemctl poweroff"]
