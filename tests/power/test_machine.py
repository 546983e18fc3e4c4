"""The power state machine, pure: readings and time in, actions out."""

from __future__ import annotations

from autopi_agent.power.machine import Emit, EngineGate, PowerDown, PowerMachine, Reading
from autopi_agent.power.settings import PowerSettings

SETTINGS = PowerSettings.from_opts({"sleep_after": 60, "low_voltage_hold": 30, "critical_hold": 5})


def names(actions: list[object]) -> list[str]:
    return [a.name for a in actions if isinstance(a, Emit)]


def downs(actions: list[object]) -> list[PowerDown]:
    return [a for a in actions if isinstance(a, PowerDown)]


def test_trip_then_sleep_timer() -> None:
    machine = PowerMachine(SETTINGS)
    assert machine.feed(Reading(0, 12.6, False)) == [EngineGate(False)]  # parked at boot
    on = machine.feed(Reading(1, 12.6, True))
    assert names(on) == ["ignition/on", "engine/start"] and EngineGate(True) in on
    assert machine.feed(Reading(2, 14.1, True)) == []
    off = machine.feed(Reading(100, 12.7, False))
    assert names(off) == ["ignition/off", "engine/stop"] and EngineGate(False) in off
    assert machine.sleep_remaining(130) == 30
    assert machine.feed(Reading(159, 12.6, False)) == []
    assert downs(machine.feed(Reading(160, 12.6, False))) == [PowerDown("sleep", "engine_off")]
    assert machine.state == "sleeping" and machine.feed(Reading(161, 14, True)) == []


def test_engine_voltage_alone_counts_as_running() -> None:
    machine = PowerMachine(SETTINGS)
    machine.feed(Reading(0, 12.6, None))
    assert names(machine.feed(Reading(1, 13.5, None))) == ["engine/start"]
    assert machine.sleep_remaining(2) is None


def test_low_voltage_held_hibernates_but_a_blip_does_nothing() -> None:
    machine = PowerMachine(SETTINGS)
    machine.feed(Reading(0, 12.5, False))
    assert machine.feed(Reading(1, 12.0, False)) == []
    assert machine.feed(Reading(29, 12.0, False)) == []
    assert machine.feed(Reading(30, 12.4, False)) == []  # recovered: the hold restarts
    assert machine.feed(Reading(45, 12.1, False)) == []
    actions = machine.feed(Reading(75, 12.1, False))
    assert names(actions) == ["battery/low"]
    assert downs(actions) == [PowerDown("hibernate", "low_voltage")]


def test_low_voltage_with_the_ignition_on_does_not_hibernate() -> None:
    machine = PowerMachine(SETTINGS)
    machine.feed(Reading(0, 12.0, True))
    assert downs(machine.feed(Reading(500, 12.0, True))) == []


def test_critical_voltage_shuts_down_after_its_hold() -> None:
    machine = PowerMachine(SETTINGS)
    machine.feed(Reading(0, 12.5, True))
    assert machine.feed(Reading(1, 10.5, True)) == []  # cranking dip
    assert machine.feed(Reading(3, 13.9, True)) == []
    machine.feed(Reading(10, 11.5, False))
    actions = machine.feed(Reading(15, 11.5, False))
    assert names(actions) == ["battery/critical"]
    assert downs(actions) == [PowerDown("shutdown", "critical_voltage")]


def test_unknown_readings_change_nothing_and_a_request_wins() -> None:
    machine = PowerMachine(SETTINGS)
    assert machine.feed(Reading(0, None, None)) == []
    assert machine.state == "starting"
    assert downs(machine.request("hibernate", "requested")) == [PowerDown("hibernate", "requested")]
    assert machine.request("sleep", "requested") == []
