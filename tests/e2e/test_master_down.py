"""Issue 4 fault: the master is down for 10 minutes of simulated driving while loggers run;
after it returns, every sample arrives exactly once, in order per series.

Time is compressed, honestly: the simulated car's scenario clock runs 20 times faster than
real time (a city drive, so the values move), and the logger asks for three PIDs every
1/20 s, i.e. at most once per simulated second. The master (a `cloud-master serve` daemon)
stays down until the agent (an `autopi-agent serve` daemon on the car's pty) has spooled at
least 600 samples of every series -- 10 minutes at 1 Hz -- and at least 10 simulated minutes
passed; then it restarts on the same ports with the same data directory. (On a busy machine
reads come slower than the interval, so the outage lasts longer: the counts decide.) The
car's ignition is then turned off, which ends the drive: the logger fails from then on, so
its sample counter, read remotely with ``loggers.status``, is the number of samples the
agent produced. The master's store must hold exactly those, once each, in production order.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from autopi_agent.spool_types import KINDS
from hil import CarConfig, SimulatedCar
from tests.fleet import Daemon, MasterDaemon, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

SCALE = 20.0  # simulated seconds per real second
PIDS = ("RPM", "SPEED", "COOLANT_TEMP")
SERIES = tuple(f"obd.{pid}" for pid in PIDS)
DOWN_READS = 600  # reads while the master is down: 10 simulated minutes at 1 Hz
LOGGERS = {"drive": {"pids": list(PIDS), "interval": 1.0 / SCALE, "timeout": 5}}


class ScaledClock:
    """A hil clock on which scenario time runs ``scale`` times faster than real time."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.origin = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self.origin) * self.scale


@pytest.fixture
def car(tmp_path: Path) -> Iterator[SimulatedCar]:
    # No UART pacing: the compression applies to the whole car, adapter line included.
    config = CarConfig(scenario="city-drive", baud=38400, reset_delay=0.1, tcp_port=None,
                       link_dir=tmp_path)
    with SimulatedCar(config, clock=ScaledClock(SCALE)) as simulated:
        yield simulated


def spooled(spool: Path, since: float = 0.0) -> Counter[str]:
    """Samples waiting in the agent's spool by series (those stamped at or after ``since``),
    read from its file without writing."""
    if not spool.exists():
        return Counter()
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT payload FROM items WHERE prio = ?",
                          (KINDS.index("telemetry"),)).fetchall()
    except sqlite3.OperationalError:
        return Counter()  # the agent is still creating the file
    finally:
        db.close()
    samples = (msgpack.unpackb(row[0]) for row in rows)
    return Counter(sample["series"] for sample in samples if sample["ts"] >= since)


def outage_done(spool: Path, since: float) -> bool:
    """Whether 10 simulated minutes passed since ``since`` and every series has DOWN_READS
    samples stamped since then in the spool. (Counting by stamp, as the test's last check
    does: a read that began before the master stopped may reach the spool after it.)"""
    if (time.time() - since) * SCALE < DOWN_READS:
        return False
    now = spooled(spool, since)
    return all(now[name] >= DOWN_READS for name in SERIES)


def stored(master: MasterDaemon) -> list[dict[str, Any]]:
    """Every sample of car-0001 in the master's telemetry store, through the export CLI."""
    proc = master.cli("telemetry", "export", "car-0001", "--format", "jsonl", "--since", "1d",
                      check=True, timeout=60)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def remote_status(master: MasterDaemon) -> dict[str, Any] | None:
    """``loggers.status`` through the master; None while the agent does not answer (it may
    not have subscribed to the restarted master's publisher yet)."""
    code, out = master.run_json("-t", "10", "car-0001", "loggers.status", timeout=60)
    status = out.get("car-0001")
    return status if code == 0 and isinstance(status, dict) else None


def drive_ended(master: MasterDaemon) -> dict[str, Any] | None:
    """The status once the logger stopped producing (failing, or gated by the ignition)."""
    status = remote_status(master)
    if status is None or status["loggers"]["drive"]["state"] not in ("failing", "gated"):
        return None
    return status


def watched(agent: Daemon, check: Callable[[], Any], timeout: float, what: str) -> None:
    """wait_for, failing with the agent's log at the time of failure (retries left out)."""
    try:
        wait_for(check, timeout=timeout, interval=0.5, what=what)
    except AssertionError as err:
        lines = [line for line in agent.log_tail(400).splitlines() if "obd.retry" not in line]
        raise AssertionError(f"{err}\n--- agent log:\n" + "\n".join(lines[-25:])) from None


def at_least(samples: list[dict[str, Any]], count: int) -> list[dict[str, Any]] | None:
    return samples if len(samples) >= count else None


def by_series(samples: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        out[sample["series"]].append(sample)
    return out


def test_master_down_for_ten_simulated_minutes(tmp_path: Path, car: SimulatedCar,
                                               master: MasterDaemon,
                                               agent_factory: Callable[..., Daemon]) -> None:
    agent = agent_factory("car-0001", loggers=LOGGERS, log_level="info",
                          obd={"port": car.pty_path, "baudrate": 38400, "protocol": "6"})
    spool = tmp_path / "car-0001" / "cache" / "spool.sqlite"
    watched(agent, lambda: set(by_series(stored(master))) >= set(SERIES), 60,
            "the first samples in the store")

    master.stop()
    down_since = time.time()
    watched(agent, lambda: outage_done(spool, down_since), 180,
            f"{DOWN_READS} samples a series spooled")
    down_until = time.time()
    master.start()

    watched(agent, lambda: sum(spooled(spool).values()) < DOWN_READS, 90,
            "the spool to drain after the restart")
    car.power.override(ignition=False)  # the drive ends: no sample is produced after this
    status = wait_for(lambda: drive_ended(master), timeout=90, what="the logger to stop")
    produced = status["loggers"]["drive"]["samples"]
    samples = wait_for(lambda: at_least(stored(master), produced), timeout=60,
                       what=f"{produced} samples in the store")

    assert status["running"] is True
    final = wait_for(lambda: remote_status(master), timeout=60, what="loggers.status")
    assert final["spool"] == {"telemetry_waiting": 0, "telemetry_dropped": 0}
    assert final["loggers"]["drive"]["samples"] == produced
    assert len(samples) == produced, "a sample was lost or stored twice"
    assert len({sample["uid"] for sample in samples}) == produced
    series = by_series(samples)
    assert set(series) == set(SERIES)
    for name, rows in series.items():
        rows.sort(key=lambda row: row["ts"])
        stamps = [row["ts"] for row in rows]
        assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False)), name
        # Spool ids sort in the order the agent wrote the samples.
        uids = [row["uid"] for row in rows]
        assert uids == sorted(uids), f"{name}: stored out of the order it was produced"
        during = [ts for ts in stamps if down_since <= ts <= down_until]
        assert len(during) >= DOWN_READS, (name, len(during))
