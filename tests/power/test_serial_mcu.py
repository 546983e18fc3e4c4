"""The SerialMcu driver against the hil MCU simulator on a real pty and a TCP port."""

from __future__ import annotations

import os
import tty
from collections.abc import Iterator

import pytest

from autopi_agent.power.errors import McuError, McuTimeout
from autopi_agent.power.mcu import SerialMcu
from autopi_agent.power.protocol import SleepRequest
from hil import CarConfig, ManualClock, SimulatedCar


@pytest.fixture
def car() -> Iterator[tuple[SimulatedCar, ManualClock]]:
    clock = ManualClock()
    config = CarConfig(scenario="engine-off", tcp_port=None, pty=False, mcu_tcp_port=0)
    with SimulatedCar(config, clock=clock) as simulated:
        yield simulated, clock


def test_status_heartbeat_and_sleep_over_a_pty(car: tuple[SimulatedCar, ManualClock]) -> None:
    simulated, clock = car
    mcu = SerialMcu(simulated.mcu_pty_path, timeout=5)
    try:
        simulated.power.override(battery_voltage=12.34)
        status = mcu.status()
        assert (status.battery_voltage, status.ignition, status.wake_reason) == (12.34, False, "power_on")
        assert mcu.heartbeat(45) == 45
        mcu.sleep(SleepRequest(3, ("ignition", "timer"), timer=600))
        request = simulated.mcu.describe()["last_request"]
        assert isinstance(request, dict)
        assert request["wake"] == ("ignition", "timer") and request["timer"] == 600
        clock.advance(4)
        simulated.power.override(ignition=True)
        simulated.mcu.tick()
        # the BOOT line arrives unasked; the driver reads it while waiting for a reply
        assert mcu.status().wake_reason == "ignition"
        assert mcu.boot_reason == "ignition"
    finally:
        mcu.close()


def test_tcp_url_and_reconnect_after_the_link_drops(car: tuple[SimulatedCar, ManualClock]) -> None:
    simulated, _ = car
    first = SerialMcu(simulated.mcu_tcp_url, timeout=5, attempts=1)
    second = SerialMcu(simulated.mcu_tcp_url, timeout=5, attempts=1)
    try:
        assert first.status().battery_voltage == 12.6
        assert second.status().battery_voltage == 12.6  # the simulator drops the first client
        with pytest.raises(McuError):
            for _ in range(3):  # the close may show as EOF at once or a silent socket
                first.status()
        assert first.status().battery_voltage == 12.6  # reopened
    finally:
        first.close()
        second.close()


def test_a_silent_port_times_out_within_the_bound() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    mcu = SerialMcu(os.ttyname(slave), timeout=0.3, attempts=2)
    try:
        with pytest.raises(McuTimeout, match="did not answer"):
            mcu.status()
        written = os.read(master, 4096)
        assert written.count(b"STATUS") == 2  # retried once with a new sequence number
        assert b"$01 STATUS*" in written and b"$02 STATUS*" in written
    finally:
        mcu.close()
        os.close(master)
        os.close(slave)


def test_a_missing_device_is_a_clear_error() -> None:
    mcu = SerialMcu("/nonexistent/ttyMCU", timeout=0.3)
    with pytest.raises(McuError, match="cannot open the power MCU at /nonexistent/ttyMCU"):
        mcu.status()
