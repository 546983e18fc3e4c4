"""End to end: the real python-OBD 0.7.3 connects to the emulated adapter and reads the scenario."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import obd
import pytest
from obd import OBDStatus

from hil import ManualClock, SimulatedCar, load_scenario, load_vehicle
from tests.hil.helpers import CarFactory

VEHICLE = load_vehicle("demo-sedan")
logging.getLogger("obd").setLevel(logging.CRITICAL)


@contextmanager
def connected(port: str, protocol: str | None) -> Iterator[obd.OBD]:
    conn = obd.OBD(portstr=port, baudrate=38400, protocol=protocol, fast=False, timeout=5)
    try:
        yield conn
    finally:
        conn.close()


def value(conn: obd.OBD, command: obd.OBDCommand) -> float:
    response = conn.query(command)
    assert not response.is_null(), command.name
    return float(response.value.magnitude)


def realistic_car(make_car: CarFactory, clock: ManualClock, scenario: str, **options: object) -> SimulatedCar:
    """UART pacing at 38400 baud and a half-second ATZ, like a real adapter."""
    return make_car(clock, scenario=scenario, baud=38400, reset_delay=0.5, **options)


def test_python_obd_auto_protocol_on_the_pty_reads_dtc_present(make_car: CarFactory) -> None:
    clock = ManualClock()
    car = realistic_car(make_car, clock, "dtc-present", tcp_port=None)
    clock.advance(7.3)
    scenario = load_scenario("dtc-present")
    with connected(car.pty_path, None) as conn:
        assert conn.status() == OBDStatus.CAR_CONNECTED
        assert conn.protocol_id() == "6"
        assert value(conn, obd.commands.RPM) == pytest.approx(car.model.signals().rpm, abs=0.25)
        assert abs(value(conn, obd.commands.RPM) - VEHICLE.drivetrain.idle_rpm) < 20
        assert value(conn, obd.commands.SPEED) == 0
        assert value(conn, obd.commands.COOLANT_TEMP) == scenario.signals["coolant_temp"].at(7.3)
        assert bytes(conn.query(obd.commands.VIN).value).decode() == VEHICLE.vin
        codes = [code for code, _ in conn.query(obd.commands.GET_DTC).value]
        expected = [*scenario.dtcs["engine"].stored, *scenario.dtcs["transmission"].stored]
        assert sorted(codes) == sorted(expected)
        conn.query(obd.commands.CLEAR_DTC)
        assert conn.query(obd.commands.GET_DTC).value == []
        assert value(conn, obd.commands.ELM_VOLTAGE) == pytest.approx(scenario.battery_voltage(7.3), abs=0.05)


def test_python_obd_protocol_6_on_the_pty_follows_city_drive(make_car: CarFactory) -> None:
    clock = ManualClock()
    car = realistic_car(make_car, clock, "city-drive", tcp_port=None)
    clock.advance(20)
    scenario = load_scenario("city-drive")
    with connected(car.pty_path, "6") as conn:
        assert conn.status() == OBDStatus.CAR_CONNECTED
        expected = car.model.signals()
        assert value(conn, obd.commands.SPEED) == pytest.approx(scenario.signals["speed"].at(20), abs=0.5)
        assert value(conn, obd.commands.RPM) == pytest.approx(expected.rpm, abs=0.25)
        assert value(conn, obd.commands.COOLANT_TEMP) == pytest.approx(expected.coolant_temp, abs=0.5)
        assert value(conn, obd.commands.ENGINE_LOAD) == pytest.approx(expected.engine_load, abs=0.2)
        assert value(conn, obd.commands.THROTTLE_POS) == pytest.approx(expected.throttle_pos, abs=0.2)
        assert value(conn, obd.commands.MAF) == pytest.approx(expected.maf, abs=0.005)
        assert value(conn, obd.commands.FUEL_LEVEL) == pytest.approx(expected.fuel_level, abs=0.2)
        assert value(conn, obd.commands.CONTROL_MODULE_VOLTAGE) == pytest.approx(
            expected.control_module_voltage, abs=0.0005
        )
        assert value(conn, obd.commands.ELM_VOLTAGE) == pytest.approx(scenario.battery_voltage(20), abs=0.05)
        clock.advance(20)  # t=40: stopped at the lights
        assert value(conn, obd.commands.SPEED) == 0


def test_python_obd_over_the_tcp_port(make_car: CarFactory) -> None:
    clock = ManualClock()
    car = realistic_car(make_car, clock, "idle", pty=False)
    with connected(car.tcp_url, "6") as conn:
        assert conn.status() == OBDStatus.CAR_CONNECTED
        assert value(conn, obd.commands.RPM) == pytest.approx(VEHICLE.drivetrain.idle_rpm, abs=20)
        assert value(conn, obd.commands.COOLANT_TEMP) == 88
        assert bytes(conn.query(obd.commands.VIN).value).decode() == VEHICLE.vin
        assert conn.query(obd.commands.GET_DTC).value == []


def test_python_obd_sees_the_adapter_but_not_the_car_with_the_ignition_off(make_car: CarFactory) -> None:
    car = realistic_car(make_car, ManualClock(), "engine-off", tcp_port=None)
    with connected(car.pty_path, None) as conn:
        assert conn.status() == OBDStatus.OBD_CONNECTED  # ATRV answered 12.6 V, 0100 found nobody
