"""Losing and finding the adapter and the car: unplug/replug, a silent adapter, a stale reset
banner, the ignition, the protocol; and a call without a registered owner (the CLI path)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import obd
import pytest
from structlog.testing import capture_logs

from autopi_agent.minion.dispatch import JobResult
from autopi_agent.obd import ObdAdapterGone, ObdOwner, ObdSettings, ObdTimeout
from autopi_agent.obd import car as car_requests
from autopi_agent.obd.commands import resolve
from hil import parse_fault
from tests.obd.fakes import SilentAdapter
from tests.obd.helpers import Agent, Bench, start_bench

logging.getLogger("obd").setLevel(logging.CRITICAL)  # python-OBD's own complaints
BenchFactory = Callable[..., Bench]


@pytest.fixture
def make_bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BenchFactory]:
    benches: list[Bench] = []

    def start(scenario: str = "idle", **options: Any) -> Bench:
        bench = start_bench("sim", request.config, tmp_path / f"car{len(benches)}", scenario,
                            **options)
        benches.append(bench)
        return bench

    yield start
    for bench in benches:
        bench.car.stop()


@pytest.fixture(autouse=True)
def link_dirs(tmp_path: Path) -> None:
    for index in range(3):
        (tmp_path / f"car{index}").mkdir()


def until(check: Callable[[], JobResult], seconds: float) -> JobResult:
    """Call ``check`` until it succeeds or ``seconds`` pass; the last result."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result.retcode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_pty_unplug_is_adapter_gone_and_replug_reconnects(
        make_bench: BenchFactory, make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    bench = make_bench()
    agent = Agent(make_owner(bench.settings()))
    assert agent.run("obd.query", "RPM").retcode == 0
    bench.car.inject(parse_fault("adapter-unplugged", {}))
    started = time.monotonic()
    gone = agent.run("obd.query", "RPM")
    assert gone.retcode == 47 and gone.ret.startswith("ERROR: adapter_gone: ")
    again = agent.run("obd.query", "RPM")  # no device: fails at once, with the retry time
    assert again.retcode == 47 and "next attempt in" in again.ret
    assert time.monotonic() - started < 1.0
    status = agent.run("obd.status").ret
    assert status["state"] == "disconnected" and status["last_error"]["error"] == "adapter_gone"
    bench.car.clear_fault("adapter-unplugged")
    back = agent.run("obd.query", "RPM")  # the device is back: reconnects on this request
    assert back.retcode == 0, back.ret
    assert agent.run("obd.status").ret["state"] == "car_connected"


def test_tcp_unplug_then_the_owner_reconnects_in_the_background(
        make_bench: BenchFactory, make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    bench = make_bench(pty=False)
    owner = make_owner(bench.settings(port=bench.car.tcp_url))
    agent = Agent(owner)
    assert agent.run("obd.query", "SPEED").retcode == 0
    bench.car.inject(parse_fault("adapter-unplugged", {}))
    assert agent.run("obd.query", "SPEED").retcode == 47
    bench.car.clear_fault("adapter-unplugged")
    deadline = time.monotonic() + 8
    while owner.state != "car_connected" and time.monotonic() < deadline:
        time.sleep(0.05)  # no request: the owner's own retries (0.2 s, 0.4 s ...) find it
    assert owner.state == "car_connected"
    assert agent.run("obd.query", "SPEED").retcode == 0


def test_connecting_right_after_python_obd_closed_reads_no_stale_reset_banner(
        make_bench: BenchFactory, make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    bench = make_bench()  # ATZ takes 0.5 s, like a real chip
    first = obd.OBD(bench.port, baudrate=38400, protocol="6", fast=False)
    assert first.status() == obd.OBDStatus.CAR_CONNECTED
    first.close()  # sends ATZ and closes at once; the banner comes 0.5 s later
    # Without the guard: python-OBD reconnecting now reads that banner as the answer to
    # its next command and gives up.
    second = obd.OBD(bench.port, baudrate=38400, protocol="6", fast=False)
    assert second.status() == obd.OBDStatus.NOT_CONNECTED  # (and its failure sent ATZ too)
    with capture_logs() as logs:
        result = Agent(make_owner(bench.settings())).run("obd.query", "RPM")
    assert result.retcode == 0, result.ret
    assert "obd.stale_reply_dropped" in [entry["event"] for entry in logs]


def test_a_silent_adapter_is_a_timeout_within_the_bound(
        tmp_path: Path, make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    with SilentAdapter(tmp_path / "silent") as adapter:
        outcome: dict[str, Any] = {}

        def python_obd_alone() -> None:
            connection = obd.OBD(adapter.path, baudrate=38400, protocol="6", fast=False)
            outcome["status"] = connection.status()

        alone = threading.Thread(target=python_obd_alone, name="python-obd-alone")
        alone.start()
        settings = ObdSettings.from_opts({"port": adapter.path, "baudrate": 38400,
                                          "timeout": 1.0, "reconnect_min": 5})
        agent = Agent(make_owner(settings))
        started = time.monotonic()
        result = agent.run("obd.query", "RPM")
        assert result.retcode == 48 and "did not answer within 1 s" in result.ret
        assert time.monotonic() - started < 1.5
        assert agent.run("obd.query", "RPM").retcode == 48  # at once, until the next attempt
        assert time.monotonic() - started < 1.6
        # Without the guard: python-OBD opened the same port with a 10 s timeout, sent ATZ
        # and is still waiting (its handshake would take ~120 s). Closing the pty frees it.
        assert alone.is_alive() and "status" not in outcome
    alone.join(10)
    assert outcome == {"status": obd.OBDStatus.NOT_CONNECTED}


def test_an_adapter_silent_mid_request_times_out_then_recovers(
        make_bench: BenchFactory, make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    bench = make_bench()
    owner = make_owner(bench.settings(timeout=0.5))
    rpm = resolve("RPM")
    assert owner.call(lambda s, d: car_requests.query(s, d, rpm)).value > 0
    # 7F 01 78 ("response pending") with the answer 1.2 s late: the adapter keeps listening
    # and prints nothing meanwhile, as a hung adapter would.
    bench.car.inject(parse_fault("negative-response", {"ecu": "engine", "nrc": "78",
                                                       "delay": "1.2"}))
    started = time.monotonic()
    with pytest.raises(ObdTimeout):
        owner.call(lambda s, d: car_requests.query(s, d, rpm))
    assert time.monotonic() - started < 0.8
    bench.car.clear_fault("negative-response")
    # The late answer arrives while the owner resyncs or reconnects; it is never taken
    # for the answer to a later request.
    agent = Agent(owner)
    result = until(lambda: agent.run("obd.query", "SPEED"), 6.0)
    assert result.retcode == 0, result.ret
    assert result.ret["command"] == "SPEED" and result.ret["raw"][0].startswith("410D")


def test_ignition_off_at_connect_is_unable_to_connect_until_it_comes_on(
        make_bench: BenchFactory, make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    bench = make_bench("engine-off")
    agent = Agent(make_owner(bench.settings()))  # protocol 6, then auto: nobody answers
    result = agent.run("obd.query", "RPM")
    assert result.retcode == 46 and "UNABLE TO CONNECT" in result.ret
    status = agent.run("obd.status").ret
    assert status["state"] == "adapter_connected" and status["ignition"] is False
    assert status["battery_voltage"] == pytest.approx(12.6, abs=0.051)
    assert agent.run("obd.battery").ret["voltage"] == pytest.approx(12.6, abs=0.051)
    bench.car.power.override(ignition=True)
    back = until(lambda: agent.run("obd.query", "RPM"), 5.0)  # after the car's backoff
    assert back.retcode == 0, back.ret
    assert agent.run("obd.protocol").ret["protocol"] == "6"


def test_protocol_fallback_and_switching(
        make_bench: BenchFactory, make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    bench = make_bench()
    agent = Agent(make_owner(bench.settings(protocol="8")))  # the car is on 6
    shown = agent.run("obd.protocol")
    assert shown.retcode == 0, shown.ret
    assert shown.ret["protocol"] == "6" and shown.ret["configured"] == "8"
    wrong = agent.run("obd.protocol", "8")  # exactly 8: CAN at 250 kbit/s on a 500 kbit/s bus
    assert wrong.retcode == 44 and "CAN ERROR" in wrong.ret and "now on protocol 6" in wrong.ret
    assert agent.run("obd.query", "RPM").retcode == 0
    switched = agent.run("obd.protocol", "6")
    assert switched.ret == {"protocol": "6", "name": "ISO 15765-4 (CAN 11/500)", "requested": "6"}
    assert agent.run("obd.protocol", "Z").retcode == 40


def test_without_a_registered_owner_each_call_makes_its_own_and_closes_it(
        make_bench: BenchFactory) -> None:
    bench = make_bench()
    section = {"port": bench.port, "baudrate": 38400, "protocol": "6"}
    agent = Agent(None, {"obd": section})  # as `autopi-agent call obd.query RPM` does
    for _ in range(2):  # the second connects right after the first closed the port
        result = agent.run("obd.query", "RPM")
        assert result.retcode == 0, result.ret
    assert "obd" not in agent.ctx.services
    # (the thread check of this test fails if a temporary owner was left running)
    off = Agent(None, {"obd": {"port": ""}}).run("obd.battery")
    assert off.retcode == 40 and "set obd.port" in off.ret


def test_a_closed_owner_refuses_work(make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    owner = make_owner(ObdSettings.from_opts({"port": "/nonexistent/obd"}))
    owner.close()
    assert owner.state == "closed"
    with pytest.raises(ObdAdapterGone, match="not running"):
        owner.call(lambda session, deadline: None)
