"""Benchmark (not a test): median RPM query latency through the connection owner vs python-OBD
directly, on the same simulated adapter (UART pacing at 38400 baud, adaptive timing ATAT1).

    .venv/bin/python -m tests.obd.bench_latency [--queries 200]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import obd

from autopi_agent.obd import ObdOwner, ObdSettings
from autopi_agent.obd import car as car_requests
from autopi_agent.obd.commands import resolve
from hil import CarConfig, ManualClock, SimulatedCar


def _median_ms(once: Callable[[], object], queries: int) -> tuple[float, float]:
    once()  # the first query teaches both sides the answer count
    times = []
    for _ in range(queries):
        started = time.perf_counter()
        once()
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.95)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=200)
    queries = parser.parse_args().queries
    logging.getLogger("obd").setLevel(logging.CRITICAL)
    link_dir = Path(tempfile.mkdtemp(prefix="obd-bench-"))
    config = CarConfig(scenario="idle", baud=38400, reset_delay=0.5, tcp_port=None,
                       link_dir=link_dir)
    with SimulatedCar(config, clock=ManualClock()) as car:
        direct = obd.OBD(car.pty_path, baudrate=38400, protocol="6", fast=True)
        try:
            python_obd = _median_ms(lambda: direct.query(obd.commands.RPM), queries)
        finally:
            direct.close()
        settings = ObdSettings.from_opts({"port": car.pty_path, "baudrate": 38400,
                                          "protocol": "6"})
        rpm = resolve("RPM")
        with ObdOwner(settings) as owner:
            owner_ms = _median_ms(lambda: owner.call(
                lambda session, deadline: car_requests.query(session, deadline, rpm)), queries)
    print(f"RPM, {queries} queries, 38400 baud, ATAT1: median / p95 ms")
    print(f"  python-OBD direct (fast=True): {python_obd[0]:.2f} / {python_obd[1]:.2f}")
    print(f"  connection owner (fast=True):  {owner_ms[0]:.2f} / {owner_ms[1]:.2f}")


if __name__ == "__main__":
    main()
