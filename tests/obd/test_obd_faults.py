"""Each simulated fault gives its typed error (distinct retcode) within its bound, and the
next query after the fault is lifted succeeds.

Where python-OBD alone gets it wrong, the test also asserts what python-OBD 0.7.3 makes of
the same fault on the same car (through the adapter's TCP port): that is the behaviour the
guard removes, and the test would fail without the guard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import obd
import pytest

from autopi_agent.minion.dispatch import JobResult
from autopi_agent.obd import ObdOwner
from hil import SimulatedCar, load_vehicle, parse_fault
from tests.obd.helpers import Agent, Bench, start_bench

VEHICLE = load_vehicle("demo-sedan")
TIMEOUT = 2.0  # the owner's bound on one request (obd.timeout)
logging.getLogger("obd").setLevel(logging.CRITICAL)  # python-OBD's own complaints


@pytest.fixture(scope="module")
def bench(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    bench = start_bench("sim", request.config, tmp_path_factory.mktemp("faults"), "city-drive")
    bench.clock.advance(20)
    yield bench
    bench.car.stop()


@pytest.fixture(scope="module")
def agent(bench: Bench) -> Iterator[Agent]:
    with ObdOwner(bench.settings(timeout=TIMEOUT)) as owner:
        yield Agent(owner)


@pytest.fixture(scope="module")
def python_obd(bench: Bench) -> Iterator[obd.OBD]:
    """python-OBD on its own, on the same car through the adapter's TCP port."""
    connection = obd.OBD(bench.car.tcp_url, baudrate=38400, protocol="6", fast=False)
    assert connection.status() == obd.OBDStatus.CAR_CONNECTED
    yield connection
    connection.close()


@contextmanager
def fault(car: SimulatedCar, name: str, settle: float = 0.0, **params: str) -> Iterator[None]:
    car.inject(parse_fault(name, params))
    try:
        yield
    finally:
        car.clear_fault(name)
        time.sleep(settle)


def timed(agent: Agent, fun: str, *args: str) -> tuple[JobResult, float]:
    started = time.monotonic()
    result = agent.run(fun, *args)
    return result, time.monotonic() - started


def rpm_now(bench: Bench) -> float:
    return bench.car.model.signals().rpm


def assert_next_query_succeeds(agent: Agent, bench: Bench) -> None:
    result = agent.run("obd.query", "RPM")
    assert result.retcode == 0, result.ret
    assert result.ret["value"] == pytest.approx(rpm_now(bench), abs=0.25)


def python_obd_rpm(connection: obd.OBD) -> Any:
    value = connection.query(obd.commands.RPM).value
    return None if value is None else float(value.magnitude)


def test_silent_ecu_is_no_data(agent: Agent, bench: Bench) -> None:
    agent.run("obd.query", "RPM")  # the adapter has learnt the answer count
    with fault(bench.car, "silent-ecu", ecu="engine"):
        result, seconds = timed(agent, "obd.query", "RPM")
        assert result.retcode == 42 and result.ret.startswith("ERROR: no_data: RPM (010C)")
        assert seconds < TIMEOUT
    assert_next_query_succeeds(agent, bench)


def test_slow_ecu_is_no_data_and_the_answer_is_not_taken_late(agent: Agent, bench: Bench) -> None:
    # The simulated ECU answers its requests in turn, each 0.4 s late: after the fault it
    # needs a moment to work through them (two: the request and its one retry).
    with fault(bench.car, "slow-ecu", settle=1.0, ecu="engine", delay="0.4"):
        result, seconds = timed(agent, "obd.query", "RPM")
        assert result.retcode == 42 and "NO DATA" in result.ret
        assert seconds < TIMEOUT
    assert_next_query_succeeds(agent, bench)


def test_negative_response_is_an_error_never_a_value(agent: Agent, bench: Bench,
                                                     python_obd: obd.OBD) -> None:
    with fault(bench.car, "negative-response", ecu="engine", nrc="22"):
        result, seconds = timed(agent, "obd.query", "RPM")
        assert result.retcode == 43 and seconds < TIMEOUT
        assert "7F 01 22 (conditions not correct)" in result.ret
        # Without the guard: python-OBD pads 7F 01 22 and reads it as 0x2200 / 4 rpm.
        assert python_obd_rpm(python_obd) == 2176.0
    assert_next_query_succeeds(agent, bench)


def test_response_pending_waits_for_the_real_answer(agent: Agent, bench: Bench,
                                                    python_obd: obd.OBD) -> None:
    with fault(bench.car, "negative-response", ecu="engine", nrc="78", delay="0.3"):
        result, seconds = timed(agent, "obd.query", "RPM")
        assert result.retcode == 0, result.ret
        assert result.ret["value"] == pytest.approx(rpm_now(bench), abs=0.25)
        assert 0.3 <= seconds < TIMEOUT
        # Without the guard: python-OBD merges 7F 01 78 and the answer into one message
        # that is neither a single nor a first frame, drops it, and returns nothing.
        assert python_obd_rpm(python_obd) is None
    assert_next_query_succeeds(agent, bench)


def test_truncated_frame_is_bad_response(agent: Agent, bench: Bench, python_obd: obd.OBD) -> None:
    with fault(bench.car, "truncated-frame", settle=0.3, ecu="engine"):
        result, seconds = timed(agent, "obd.query", "RPM")
        assert result.retcode == 45 and seconds < TIMEOUT
        assert "announced 4 bytes but carried 2" in result.ret
        vin = agent.run("obd.query", "VIN")  # obd.vin has it cached since the connection
        assert vin.retcode == 45 and "announced 20 bytes but carried 2" in vin.ret
        # Without the guard: python-OBD pads 41 0C to 41 0C 00 00 and reads 0 rpm.
        assert python_obd_rpm(python_obd) == 0.0
    assert_next_query_succeeds(agent, bench)
    assert agent.run("obd.query", "VIN").ret["value"] == VEHICLE.vin


def test_garbage_on_the_line_is_skipped(agent: Agent, bench: Bench, python_obd: obd.OBD) -> None:
    with fault(bench.car, "garbage", count="24"):
        result, seconds = timed(agent, "obd.query", "RPM")
        assert result.retcode == 0, result.ret
        assert result.ret["value"] == pytest.approx(rpm_now(bench), abs=0.25)
        assert any("unreadable bytes" in note for note in result.ret["notes"])
        # Without the guard: the junk makes the line non-hex, python-OBD files it as an
        # adapter message from an unknown ECU and RPM gets nothing.
        assert python_obd_rpm(python_obd) != pytest.approx(rpm_now(bench), abs=0.25)
    assert_next_query_succeeds(agent, bench)


def test_bus_off_is_a_bus_error(agent: Agent, bench: Bench) -> None:
    with fault(bench.car, "bus-off"):
        result, seconds = timed(agent, "obd.query", "RPM")
        assert result.retcode == 44 and "CAN ERROR" in result.ret and seconds < TIMEOUT
        battery = agent.run("obd.battery")  # the adapter itself is fine
        assert battery.retcode == 0 and battery.ret["voltage"] > 11
    assert_next_query_succeeds(agent, bench)


def test_ignition_off_then_on(agent: Agent, bench: Bench) -> None:
    bench.car.power.override(ignition=False)
    try:
        result, seconds = timed(agent, "obd.query", "RPM")
        assert result.retcode == 44 and "ignition off" in result.ret and seconds < TIMEOUT
        status = agent.run("obd.status").ret
        assert status["ignition"] is False and status["state"] == "car_connected"
    finally:
        bench.car.power.release()
    assert_next_query_succeeds(agent, bench)
