"""Fan-out: one master, N agents (many per process), test.ping to all; Salt at small N."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import keys, procfs, salt_side
from bench.ours import OurMaster
from bench.proc import REAPER, BenchError, Spawned
from bench.stats import Series
from tests.interop.saltpeer import SaltVenv

# Rough file descriptors one agent needs in a fleet process (two TCP links, socket
# mailboxes and monitor pairs, its spool database), and on the master (two TCP links).
FDS_PER_AGENT = 14
FDS_PER_AGENT_ON_MASTER = 2
FDS_SPARE = 512
# A round that has not completed by then is incomplete; its time counts as the timeout.
ROUND_TIMEOUT = 30.0
# Rounds stop after this many seconds of sampling, once MIN_ROUNDS are in.
SAMPLING_BUDGET = 60.0
MIN_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class FleetRun:
    """One fleet size: the round trips and what it took to bring the fleet up."""

    size: int
    processes: int
    publish: Series
    returned: tuple[int, ...]
    auth_seconds: float
    build_seconds: float
    master_pss_mib: float
    fleet_rss_mib: float
    warmup_returns: int
    fds_per_process: int
    stored: tuple[tuple[int, float], ...]  # per round, in the master's job cache


def max_fleet(nofile: int, processes: int) -> int:
    """The largest fleet the open-file limit allows, on the master and in each process."""
    on_master = (nofile - FDS_SPARE) // FDS_PER_AGENT_ON_MASTER
    in_processes = processes * ((nofile - FDS_SPARE) // FDS_PER_AGENT)
    return min(on_master, in_processes)


def processes_for(size: int) -> int:
    return 1 if size <= 100 else 4


def car_disks() -> Path | None:
    """A tmpfs for the fleet's state, if there is one (see ``measure_ours``)."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def measure_ours(work: Path, size: int, key_dirs: list[Path], samples: int, log: Any) -> FleetRun:
    """Start a master and ``size`` agents in a few processes, then time test.ping to all.

    Every agent fsyncs its spool on each return. Real cars do that on their own SD cards,
    in parallel; here they would all queue on the master's disk, so the fleet's state
    lives on a tmpfs when there is one (its fsync costs nothing) and the master's on disk.
    """
    master = OurMaster.create(work / "master")
    tmpfs = car_disks()
    cars = Path(tempfile.mkdtemp(prefix="ab-cars-", dir=tmpfs)) if tmpfs else work
    ids = [f"car-{index:05d}" for index in range(size)]
    pool = [(d, (d / keys.PUBLIC_NAME).read_text()) for d in key_dirs]
    for index, minion_id in enumerate(ids):
        keys.preaccept(master.pki_dir, minion_id, pool[index % len(pool)][1])
    master.start()
    workers: list[Spawned] = []
    try:
        count = processes_for(size)
        for number in range(count):
            chunk = list(range(number, size, count))
            spec = {"ids": [ids[i] for i in chunk],
                    "key_dirs": [str(pool[i % len(pool)][0]) for i in chunk],
                    "root": str(cars / f"fleet{number}"), "log_level": "warning",
                    "master_port": master.opts["ret_port"],
                    "publish_port": master.opts["publish_port"]}
            path = work / f"fleet{number}.json"
            path.write_text(json.dumps(spec))
            workers.append(Spawned([sys.executable, "-m", "bench.fleet_worker", str(path)],
                                   work / f"fleet{number}.log", marker=b'"auth_seconds"'))
        reports = [_report(worker) for worker in workers]
        ready = sum(r["ready"] for r in reports)
        auth = max(r["auth_seconds"] for r in reports)
        build = max(r["build_seconds"] for r in reports)
        log(f"fan-out {size}: {ready} agents authenticated in {auth:.1f} s "
            f"({count} processes)")
        if ready != size:
            raise BenchError(f"only {ready} of {size} agents authenticated")
        return _ping_all(master, size, samples, count, (auth, build), workers, log)
    finally:
        for worker in workers:
            worker.stop(timeout=60)
        master.stop()
        if cars != work:
            shutil.rmtree(cars, ignore_errors=True)


def _report(worker: Spawned) -> dict[str, Any]:
    worker.wait_marked(400.0)
    report: dict[str, Any] = json.loads(worker.marked_line)
    return report


def _ping_all(master: OurMaster, size: int, samples: int, processes: int,
              start: tuple[float, float], workers: list[Spawned], log: Any) -> FleetRun:
    from cloud_master.client import MasterClient

    times: list[float] = []
    returned: list[int] = []
    stored: list[tuple[int, float]] = []
    jobs_db = Path(master.opts["root_dir"]) / "cache" / "jobs.sqlite"
    with MasterClient(master.sock_dir) as client:
        # Warm-up (not counted): lets the start-up announcements drain and the links settle.
        warm, _, _ = _round(client, ROUND_TIMEOUT * 2)
        fds = max(procfs.open_files(w.pid) for w in workers)
        if warm < size:
            log(f"fan-out {size}: warm-up round got {warm} of {size} returns")
        time.sleep(1.0)
        deadline = time.monotonic() + SAMPLING_BUDGET
        while len(times) < samples and (len(times) < MIN_ROUNDS or time.monotonic() < deadline):
            count, elapsed, jid = _round(client, ROUND_TIMEOUT)
            times.append(elapsed)
            returned.append(count)
            stored.append(stored_returns(jobs_db, jid, size, ROUND_TIMEOUT))
    assert master.daemon is not None
    pss = procfs.group_pss_mib(master.daemon.pid)
    rss = sum(procfs.group_rss_mib(w.pid) for w in workers)
    series = Series(tuple(times))
    log(f"fan-out {size}: publish to all returns median {series.median:.3f} s, "
        f"p90 {series.p90:.3f} s, returns {min(returned)}-{max(returned)} of {size}")
    log(f"fan-out {size}: master stored all returns after median "
        f"{Series(tuple(t for _, t in stored)).median:.3f} s, "
        f"{sum(c == size for c, _ in stored)} of {len(stored)} rounds complete")
    return FleetRun(size, processes, series, tuple(returned), *start, pss, rss, warm, fds,
                    tuple(stored))


def _round(client: Any, timeout: float) -> tuple[int, float, str]:
    """One test.ping to every agent: (returns received, seconds until the last or the
    timeout, jid)."""
    from cloud_master.client import MasterUnavailable

    count, jid = 0, ""
    begin = time.perf_counter()
    try:
        for item in client.run_iter("*", "test.ping", timeout=timeout):
            count += "return" in item
            jid = jid or str(item.get("jid", ""))
    except MasterUnavailable:
        pass  # the master was too busy to close the stream in time: counted as incomplete
    return count, time.perf_counter() - begin, jid


def stored_returns(jobs_db: Path, jid: str, size: int, timeout: float) -> tuple[int, float]:
    """What the master's job cache holds for ``jid``: (returns, seconds from the job's
    start to the last one), waiting up to ``timeout`` from the start for all ``size``
    (an incomplete round counts as ``timeout``)."""
    with contextlib.closing(sqlite3.connect(f"file:{jobs_db}?mode=ro", uri=True,
                                            timeout=10)) as db:
        started = db.execute("SELECT started FROM jobs WHERE jid = ?", (jid,)).fetchone()
        if started is None:
            return 0, timeout
        while True:
            count, last = db.execute("SELECT count(*), max(received) FROM returns "
                                     "WHERE jid = ?", (jid,)).fetchone()
            if count >= size:
                return int(count), last - started[0]
            if time.time() > started[0] + timeout:
                return int(count), timeout  # incomplete: counted as the timeout
            time.sleep(0.2)


def measure_salt(venv: SaltVenv, work: Path, size: int, samples: int,
                 log: Any) -> tuple[Series, tuple[int, ...]]:
    """``size`` stock salt-minions on one salt-master; LocalClient test.ping to all."""
    master = salt_side.start_master(venv, work / "m")
    minions = []
    client = None
    try:
        for index in range(size):
            minion = salt_side.make_minion(venv, work / f"n{index}", master, f"salt-car-{index:03d}")
            minions.append(minion)
            minion.start()
            REAPER.track(minion.pid)
        begin = time.perf_counter()
        for minion in minions:
            minion.wait_ready(timeout=300)
        log(f"salt fan-out {size}: minions ready in {time.perf_counter() - begin:.1f} s")
        client = salt_side.LocalClientProcess(venv, master, timeout=int(ROUND_TIMEOUT))
        client.round()  # warm-up, not counted: the first call also connects
        rounds = [client.round() for _ in range(samples)]
        series = Series(tuple(seconds for seconds, _ in rounds))
        log(f"salt fan-out {size}: LocalClient to all median {series.median:.3f} s")
        return series, tuple(count for _, count in rounds)
    finally:
        if client is not None:
            client.close()
        _stop_all(minions)
        master.stop()


def _stop_all(minions: list[Any]) -> None:
    """SIGTERM every minion at once, then let the harness reap each (SIGKILL if needed)."""
    for minion in minions:
        if minion.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(minion.pid, signal.SIGTERM)
    time.sleep(0.5)
    for minion in minions:
        minion.stop(timeout=0.1)
