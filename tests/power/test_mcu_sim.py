"""The hil power MCU simulator: sleep, wake triggers, hibernate, watchdog, control command."""

from __future__ import annotations

import pytest

from autopi_agent.power.errors import McuTimeout
from autopi_agent.power.protocol import SleepRequest
from hil import CarConfig, ManualClock, PowerSim, SimulatedCar, execute
from hil.mcu import PowerMcuSim
from hil.mcu_codec import McuFrame, parse, render
from tests.power.helpers import SimLinkMcu

ALL = ("ignition", "voltage_rise", "timer")


def make(voltage: float = 12.6, ignition: bool = False) -> tuple[PowerMcuSim, SimLinkMcu, ManualClock]:
    clock = ManualClock()
    power = PowerSim(clock)
    power.override(battery_voltage=voltage, ignition=ignition)
    sim = PowerMcuSim(power, clock)
    return sim, SimLinkMcu(sim), clock


def test_status_reports_power_sim_values() -> None:
    sim, mcu, clock = make(12.45, ignition=True)
    clock.advance(7)
    status = mcu.status()
    assert (status.battery_voltage, status.ignition, status.uptime) == (12.45, True, 7.0)
    assert status.wake_reason == "power_on"


def test_sleep_cuts_power_after_delay_and_timer_wakes() -> None:
    sim, mcu, clock = make()
    mcu.sleep(SleepRequest(10, ("timer",), timer=3600))
    assert sim.describe()["pi"] == "shutting_down"
    clock.advance(9)
    assert mcu.status().battery_voltage == 12.6  # the Pi still runs during the delay
    clock.advance(2)
    assert sim.describe()["asleep"] is True
    clock.advance(3598)
    assert sim.describe()["asleep"] is True
    clock.advance(2)
    state = sim.describe()
    assert state["pi"] == "on" and state["wake_reason"] == "timer" and state["boots"] == 2
    assert sim.take_output().startswith(b"$00 BOOT wake=timer*")


def test_ignition_and_voltage_rise_wake_only_when_asked_for() -> None:
    sim, mcu, clock = make()
    mcu.sleep(SleepRequest(0, ("voltage_rise",), voltage_rise=0.5))
    clock.advance(1)
    sim.power.override(ignition=True)
    assert sim.describe()["asleep"] is True  # ignition is not a trigger here
    sim.power.override(battery_voltage=13.0)
    assert sim.describe()["asleep"] is True  # +0.4 V
    sim.power.override(battery_voltage=13.2)
    assert sim.describe()["wake_reason"] == "voltage_rise"


def test_hibernate_wakes_on_ignition_only() -> None:
    sim, mcu, clock = make()
    mcu.hibernate(5)
    clock.advance(100_000)
    sim.power.override(battery_voltage=14.5)
    assert sim.describe()["asleep"] is True
    sim.power.override(ignition=True)
    state = sim.describe()
    assert state["wake_reason"] == "ignition" and state["last_request"]["kind"] == "hibernate"
    assert state["wake_triggers"] == ["ignition"]


def test_requests_are_ignored_while_the_pi_is_unpowered() -> None:
    sim, mcu, clock = make()
    mcu.hibernate(0)
    clock.advance(1)
    with pytest.raises(McuTimeout):
        mcu.status()
    assert sim.describe()["pi"] == "asleep"


def test_watchdog_power_cycles_the_pi_without_heartbeats() -> None:
    sim, mcu, clock = make()
    assert mcu.heartbeat(30) == 30
    clock.advance(29)
    assert mcu.heartbeat(30) == 30
    clock.advance(29)
    assert sim.describe()["watchdog"] == {"timeout": 30.0, "resets": 0}
    clock.advance(2)
    state = sim.describe()
    assert state["wake_reason"] == "watchdog" and state["watchdog"]["resets"] == 1
    assert state["watchdog"]["timeout"] == 0.0  # disarmed until the new boot's first heartbeat
    assert mcu.heartbeat(0) == 0


def test_bad_requests_get_errors_and_noise_is_counted() -> None:
    sim, _, _ = make()
    assert sim.handle(b"$05 SLEEP delay=1 wake=moon*00\r\n") is None  # bad checksum: ignored
    reply = sim.handle(render(McuFrame(5, "SLEEP", (("delay", "1"), ("wake", "moon")))))
    assert reply is not None and parse(reply) == McuFrame(5, "ERR", (("code", "bad_argument"),
                                                                      ("field", "wake")))
    reply = sim.handle(render(McuFrame(6, "DANCE")))
    assert reply is not None and parse(reply) == McuFrame(6, "ERR", (("code", "unknown_verb"),))
    assert sim.describe()["noise_lines"] == 1 and sim.describe()["requests"] == 0


def test_control_socket_command_shows_and_wakes_the_mcu() -> None:
    clock = ManualClock()
    config = CarConfig(scenario="engine-off", tcp_port=None, pty=False, mcu_pty=False)
    with SimulatedCar(config, clock=clock) as car:
        SimLinkMcu(car.mcu).sleep(SleepRequest(0, ALL, timer=60, voltage_rise=0.5))
        clock.advance(1)
        reply = execute(car, "mcu")
        assert reply["ok"] is True
        mcu = reply["mcu"]
        assert isinstance(mcu, dict) and mcu["asleep"] is True
        assert mcu["wake_triggers"] == list(ALL)
        assert execute(car, "power ignition on")["ok"] is True
        after = execute(car, "mcu")["mcu"]
        assert isinstance(after, dict) and after["wake_reason"] == "ignition"
        assert execute(car, "mcu wake timer")["ok"] is True
        assert car.mcu.wake_reason == "timer"
        assert execute(car, "mcu jump")["ok"] is False
