"""The ``power`` execution module through the dispatcher: confirm from remote, local calls
against the MCU simulator's pty, history and wake triggers kept on disk."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.config import load_agent_config
from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.dispatch import Dispatcher, JobResult
from autopi_agent.portlock import PortLock
from hil import CarConfig, ManualClock, SimulatedCar
from tests.power.helpers import calls, stub_state


@pytest.fixture
def car() -> Iterator[SimulatedCar]:
    config = CarConfig(scenario="engine-off", tcp_port=None, pty=False)
    with SimulatedCar(config, clock=ManualClock()) as simulated:
        yield simulated


def context(tmp_path: Path, car: SimulatedCar, **services: Any) -> AgentContext:
    opts = load_agent_config(None, {"id": "car-0001", "root_dir": str(tmp_path), "power": {
        "enabled": True, "mcu": {"port": car.mcu_pty_path, "timeout": 5},
        "power_off_delay": 7, "wake_triggers": ["ignition", "timer"], "wake_timer": 900,
        "shutdown_command": ["systemctl", "poweroff"]}})
    ctx = AgentContext.create(opts, grains={"id": "car-0001"})
    ctx.services.update(services)
    return ctx


def run(ctx: AgentContext, fun: str, *arg: Any) -> JobResult:
    async def call() -> JobResult:
        dispatcher = Dispatcher(ctx)
        try:
            return await dispatcher.run(fun, list(arg), timeout=60)
        finally:
            await dispatcher.aclose(grace=1.0)
    return asyncio.run(call())


def test_remote_power_down_needs_confirm(tmp_path: Path, car: SimulatedCar) -> None:
    ctx = context(tmp_path, car, master=object())
    for fun in ("power.sleep", "power.hibernate", "power.reboot", "power.shutdown"):
        result = run(ctx, fun)
        assert result.retcode != 0 and "confirm=True" in str(result.ret), fun
    assert car.mcu.requests == []


def test_local_status_reads_the_mcu(tmp_path: Path, car: SimulatedCar) -> None:
    car.power.override(battery_voltage=12.41, ignition=True)
    result = run(context(tmp_path, car), "power.status")
    assert result.retcode == 0, result.ret
    ret = result.ret
    assert (ret["battery_voltage"], ret["ignition"], ret["state"]) == (12.41, True, "unmanaged")
    assert ret["wake_reason"] == "power_on" and ret["wake_triggers"] == ["ignition", "timer"]


def test_local_sleep_tells_the_mcu_and_halts(tmp_path: Path, car: SimulatedCar,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    stubs = stub_state(tmp_path, monkeypatch)
    result = run(context(tmp_path, car), "power.sleep", "interval=3600", "delay=0")
    assert result.retcode == 0, result.ret
    assert result.ret["wake_triggers"] == ["ignition", "timer"] and result.ret["wake_timer"] == 3600
    request = car.mcu.requests[-1]
    assert (request.kind, request.wake, request.timer, request.delay) == (
        "sleep", ("ignition", "timer"), 3600, 7)
    assert calls(stubs) == ["systemctl poweroff"]
    history = run(context(tmp_path, car), "power.history").ret
    assert [entry["event"] for entry in history] == ["power/sleep"]


def test_wake_triggers_set_and_kept(tmp_path: Path, car: SimulatedCar) -> None:
    ctx = context(tmp_path, car)
    shown = run(ctx, "power.wake_triggers").ret
    assert shown == {"wake_triggers": ["ignition", "timer"], "wake_timer": 900,
                     "wake_voltage_rise": 0.5}
    changed = run(ctx, "power.wake_triggers", "triggers=voltage_rise,ignition", "voltage_rise=0.8")
    assert changed.ret["wake_triggers"] == ["voltage_rise", "ignition"]
    again = run(context(tmp_path, car), "power.wake_triggers").ret
    assert again["wake_triggers"] == ["voltage_rise", "ignition"] and again["wake_voltage_rise"] == 0.8
    bad = run(ctx, "power.wake_triggers", "triggers=moonrise")
    assert bad.retcode != 0 and "ignition, voltage_rise, timer" in str(bad.ret)


def test_local_call_refused_while_another_process_has_the_mcu(tmp_path: Path,
                                                              car: SimulatedCar) -> None:
    ctx = context(tmp_path, car)
    daemon = PortLock(car.mcu_pty_path, Path(ctx.opts["cachedir"]) / "locks")
    daemon.acquire()  # what the daemon's manager holds while it talks to the MCU
    busy = f"in use by another process (pid {os.getpid()})"
    try:
        status = run(ctx, "power.status")
        assert status.retcode == 0 and status.ret["battery_voltage"] is None
        assert busy in status.ret["mcu_error"]
        refused = run(ctx, "power.sleep", "delay=0")
        assert refused.retcode != 0 and busy in str(refused.ret)
    finally:
        daemon.release()
    assert car.mcu.requests == []
    assert run(context(tmp_path, car), "power.status").ret["battery_voltage"] is not None
