"""Issue 4's benchmark: what a 10-PID x 1 Hz logger costs the agent on the simulated car.

An ``autopi-agent serve`` daemon (the product, as a car runs it) reads ten PIDs every second
from a hil car (city drive, 38400 baud UART pacing) and sends the samples to a
``cloud-master serve``. After a warm-up (the logger running, python-OBD loaded, the first
batches sent), the window starts: the agent's CPU time (utime + stime of its process, all
its threads, from /proc/PID/stat; the simulator runs in this benchmark process and is not
counted) and its RSS are read at the start, every tenth of the window and at the end.

    python -m bench.logger_cost [--window 600] [--warmup 30]

The window defaults to 10 minutes, or $AUTOPI_BENCH_LOGGER_WINDOW seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import keys, ours, procfs
from bench.ours import OurMaster, agent_config
from bench.proc import BenchError, Spawned
from bench.stats import Row, Series

__all__ = ["LoggerFigures", "default_window", "measure", "rows"]

AGENT_ID = "bench-logger-1"
WINDOW_ENV = "AUTOPI_BENCH_LOGGER_WINDOW"
DEFAULT_WINDOW_S = 600.0
SLICES = 10
BUDGET_CPU_PERCENT = 2.0
BUDGET_RSS_GROWTH_MIB = 2.0
PIDS = ["RPM", "SPEED", "COOLANT_TEMP", "ENGINE_LOAD", "THROTTLE_POS", "INTAKE_TEMP", "MAF",
        "FUEL_LEVEL", "CONTROL_MODULE_VOLTAGE", "RUN_TIME"]
READY_MARK = b'"agent.ready"'


@dataclass(frozen=True, slots=True)
class LoggerFigures:
    """One window: CPU % of one core per slice, RSS readings (MiB), samples written."""

    window_s: float
    warmup_s: float
    cpu_percent: Series
    cpu_whole_percent: float
    rss_mib: tuple[float, ...]
    samples: int

    @property
    def rss_growth(self) -> float:
        return self.rss_mib[-1] - self.rss_mib[0]


def default_window() -> float:
    """$AUTOPI_BENCH_LOGGER_WINDOW seconds, else 10 minutes."""
    value = os.environ.get(WINDOW_ENV, "")
    try:
        return float(value) if value else DEFAULT_WINDOW_S
    except ValueError:
        raise BenchError(f"${WINDOW_ENV} must be a number of seconds, not {value!r}") from None


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError as err:
        raise BenchError(f"the agent (pid {pid}) is gone") from err
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of proc(5)): utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _logger_status(client: Any) -> dict[str, Any]:
    answer = client.cmd(AGENT_ID, "loggers.status", ["bench"], timeout=30)
    status = answer.get(AGENT_ID)
    if not isinstance(status, dict) or "bench" not in status.get("loggers", {}):
        raise BenchError(f"loggers.status answered {answer!r}")
    logger: dict[str, Any] = status["loggers"]["bench"]
    return logger


def _window(agent: Spawned, window_s: float) -> tuple[list[float], list[float], float]:
    """CPU % per slice, RSS readings, and the whole window's CPU %."""
    clock_start, cpu_start = time.monotonic(), cpu_seconds(agent.pid)
    rss = [procfs.rss_kib(agent.pid) / 1024]
    cpu: list[float] = []
    last_clock, last_cpu = clock_start, cpu_start
    for index in range(1, SLICES + 1):
        time.sleep(max(0.0, clock_start + window_s * index / SLICES - time.monotonic()))
        if not agent.alive:
            raise BenchError(f"the agent died during the window:\n{agent.tail()}")
        now, used = time.monotonic(), cpu_seconds(agent.pid)
        cpu.append(100 * (used - last_cpu) / (now - last_clock))
        rss.append(procfs.rss_kib(agent.pid) / 1024)
        last_clock, last_cpu = now, used
    whole = 100 * (last_cpu - cpu_start) / (last_clock - clock_start)
    return cpu, rss, whole


def measure(work: Path, key_dir: Path, *, window_s: float, warmup_s: float = 30.0,
            log: Callable[[str], None] = print) -> LoggerFigures:
    """Run the agent with the logger on the simulated car and measure one window."""
    from cloud_master.client import MasterClient
    from hil import CarConfig, SimulatedCar

    logging.getLogger("obd").setLevel(logging.CRITICAL)
    work.mkdir(parents=True, exist_ok=True)
    car_config = CarConfig(scenario="city-drive", baud=38400, tcp_port=None, link_dir=work)
    with SimulatedCar(car_config) as car:
        master = OurMaster.create(work / "master")
        master.start()
        try:
            master.accept(AGENT_ID, key_dir, work / "agent" / "pki" / "minion")
            config = agent_config(work / "agent", master, AGENT_ID,
                                  obd={"port": car.pty_path, "baudrate": 38400, "protocol": "6"},
                                  loggers={"bench": {"pids": PIDS, "interval": 1}})
            agent = Spawned([str(ours.AGENT_BIN / "autopi-agent"), "-c", str(config), "serve"],
                            work / "agent.log", marker=READY_MARK)
            try:
                agent.wait_marked(60)
                log(f"logger cost: warm-up {warmup_s:.0f} s, then a {window_s:.0f} s window")
                time.sleep(warmup_s)
                with MasterClient(master.sock_dir) as client:
                    before = _logger_status(client)
                    if before["state"] != "running" or not before["samples"]:
                        raise BenchError(f"the logger is not running after the warm-up: {before}")
                    cpu, rss, whole = _window(agent, window_s)
                    after = _logger_status(client)
            finally:
                agent.stop()
        finally:
            master.stop()
    return LoggerFigures(window_s, warmup_s, Series(tuple(cpu)), whole, tuple(rss),
                         after["samples"] - before["samples"])


def rows(figures: LoggerFigures) -> list[Row]:
    """Rows for ``bench.run``: CPU % of one core, and RSS growth over the window."""
    expected = len(PIDS) * figures.window_s
    produced = f"{figures.samples} in the window (10 PIDs x 1 Hz would be {expected:.0f})"
    defect = "" if figures.samples >= 0.9 * expected else "the logger wrote too few samples"
    minutes = f"{figures.window_s / 60:.1f} min"
    note = ("An `autopi-agent serve` daemon with a logger of ten PIDs every second "
            f"({', '.join(PIDS)}) on the simulated car (hil, city drive, 38400 baud), sending "
            "to a `cloud-master serve`. The simulator runs in the benchmark process and is not "
            f"counted. After a {figures.warmup_s:.0f} s warm-up, a {minutes} window: CPU is "
            "utime + stime of the agent's process (all threads) from /proc/PID/stat; the "
            f"window is cut in {SLICES} slices. RSS from /proc/PID/status.")
    return [
        Row(f"Logger 10 PIDs x 1 Hz: agent CPU, % of one core ({minutes} window)", "%",
            figures.cpu_percent, None, BUDGET_CPU_PERCENT, note,
            {"whole window": f"{figures.cpu_whole_percent:.2f} %", "samples written": produced,
             "window": f"{figures.window_s:.0f} s (`--logger-window` / ${WINDOW_ENV})"},
            defect),
        Row(f"Logger 10 PIDs x 1 Hz: agent RSS growth over the {minutes} window", "MiB",
            Series((figures.rss_growth,)), None, BUDGET_RSS_GROWTH_MIB, note,
            {"RSS at start / max / end": f"{figures.rss_mib[0]:.1f} / {max(figures.rss_mib):.1f} / "
             f"{figures.rss_mib[-1]:.1f} MiB",
             "window": f"{figures.window_s:.0f} s; the budget is for 10 minutes"},
            defect),
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure one window and print the rows."""
    from autopi_common.logging import setup_logging
    from bench import report

    parser = argparse.ArgumentParser(prog="python -m bench.logger_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=None,
                        help=f"seconds (default ${WINDOW_ENV}, else {DEFAULT_WINDOW_S:.0f})")
    parser.add_argument("--warmup", type=float, default=30.0)
    ns = parser.parse_args(argv)
    setup_logging("warning")
    window = ns.window if ns.window is not None else default_window()
    with tempfile.TemporaryDirectory(prefix="ab-log-", dir="/tmp") as work:
        figures = measure(Path(work), keys.ensure_pool(1)[0], window_s=window,
                          warmup_s=ns.warmup)
    print(report.summary(rows(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
