"""obd.monitor: raw frames through the owner's serial link (ATMA), bounded by time and count.

hil's adapter has no ATMA (hil/README.md), so the adapter here is hil's ELM327 interpreter
behind a pty front end that adds it (tests/obd/fakes.py): it prints a frame every 10 ms
until any byte arrives, as the chip does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autopi_agent.obd import ObdOwner, ObdSettings
from autopi_agent.obd.monitor import parse_monitor_line
from hil import CarConfig, ManualClock, SimulatedCar
from tests.obd.fakes import MonitoringAdapter
from tests.obd.helpers import Agent


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[MonitoringAdapter]:
    with SimulatedCar(CarConfig(scenario="idle", adapter=False), clock=ManualClock()) as car:
        with MonitoringAdapter(tmp_path / "obd", car.open_adapter()) as fake:
            yield fake


def test_monitor_stops_at_the_count_or_the_duration_and_leaves_the_line_clean(
        adapter: MonitoringAdapter, make_owner: Callable[[ObdSettings], ObdOwner]) -> None:
    owner = make_owner(ObdSettings.from_opts({"port": adapter.path, "baudrate": 38400,
                                              "protocol": "6", "timeout": 2}))
    agent = Agent(owner)
    counted = agent.run("obd.monitor", "count=5", "duration=10")
    assert counted.retcode == 0, counted.ret
    assert counted.ret["stopped_by"] == "count" and counted.ret["count"] == 5
    assert counted.ret["frames"][0] == {"id": "7E8", "data": "04410C0C30",
                                        "t": counted.ret["frames"][0]["t"]}
    assert [frame["id"] for frame in counted.ret["frames"][:3]] == ["7E8", "7E9", "7DF"]
    assert counted.ret["seconds"] < 2
    started = time.monotonic()
    timed = agent.run("obd.monitor", "duration=0.3")
    assert timed.retcode == 0 and timed.ret["stopped_by"] == "duration"
    assert 0.3 <= time.monotonic() - started < 2 and timed.ret["count"] >= 5
    assert agent.run("obd.query", "RPM").ret["unit"] == "rpm"  # the stop left nothing behind
    assert adapter.received.count(b"ATMA\r") == 2


@pytest.mark.parametrize("args", [["duration=0"], ["duration=61"], ["count=0"], ["count=many"]])
def test_monitor_bounds_are_checked_first(args: list[str]) -> None:
    result = Agent(None, {"obd": {"port": "/nonexistent/obd"}}).run("obd.monitor", *args)
    assert result.retcode == 40


def test_monitor_lines() -> None:
    assert parse_monitor_line("7E8 04 41 0C 0C 30") == {"id": "7E8", "data": "04410C0C30"}
    assert parse_monitor_line("18 DA F1 10 03 41 0D 32") == {"id": "18DAF110", "data": "03410D32"}
    assert parse_monitor_line("BUFFER FULL") is None
    assert parse_monitor_line("7E8") is None
