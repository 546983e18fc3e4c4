"""`make bench`: every benchmark of ours and of real Salt 3008 in one run, into RESULTS.md.

    python -m bench.run [--samples 15] [--fleet 1000,2000,5000] [--salt-fleet 30] [--quick]

Salt comes from $AUTOPI_SALT_VENV (else .cache/salt-venv); without it the run stops,
unless --no-salt. Scratch files live in a short-named directory under /tmp (Salt's IPC
socket paths must stay short) and are removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import fanout, keys, ours, procfs, report, salt_side, single
from bench.proc import REAPER, BenchError
from bench.single import Figures
from bench.stats import Row, Series

HERE = Path(__file__).resolve().parent
FLEET_BUDGET_SIZE, FLEET_BUDGET_S = 1000, 2.0
BUDGETS = {"rss": 30.0, "start": 300.0, "cli": 250.0, "api": 10.0, "call": 300.0, "pss": 80.0}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=15,
                        help="samples per single-agent benchmark (default 15)")
    parser.add_argument("--fleet", default="1000,2000,5000",
                        help="fan-out fleet sizes, comma-separated ('' for none)")
    parser.add_argument("--fleet-samples", type=int, default=10,
                        help="test.ping rounds per fleet size (default 10)")
    parser.add_argument("--salt-fleet", type=int, default=30,
                        help="stock salt-minions (and as many agents) for the small fan-out "
                        "compared with Salt; 0 skips it (default 30)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds an agent or minion idles before its memory is read")
    parser.add_argument("--obd-queries", type=int, default=200,
                        help="RPM queries a side for the OBD query-rate benchmark (default 200)")
    parser.add_argument("--logger-window", type=float, default=None,
                        help="seconds the logger-cost window lasts (default "
                        "$AUTOPI_BENCH_LOGGER_WINDOW, else 600)")
    parser.add_argument("--logger-warmup", type=float, default=30.0,
                        help="seconds the logger runs before its window starts (default 30)")
    parser.add_argument("--quick", action="store_true",
                        help="5 samples, fleet 1000 only, 10 Salt minions, a 60 s logger "
                        "window: a smoke run")
    parser.add_argument("--no-salt", action="store_true", help="measure our side only")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ns = parser.parse_args(argv)
    if ns.quick:
        ns.samples, ns.fleet, ns.fleet_samples, ns.salt_fleet = 5, "1000", 5, 10
        ns.logger_window = ns.logger_window or 60.0
    return ns


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Problems(list[str]):
    """What went wrong in this run; each benchmark that failed leaves a line here."""

    def attempt(self, what: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except (BenchError, OSError, TimeoutError, ValueError) as err:
            text = str(err).strip().splitlines()
            self.append(f"{what}: {text[0] if text else type(err).__name__}")
            log(f"FAILED {what}: {err}")
            return None


def ms(series: Series) -> Series:
    return Series(tuple(value * 1000 for value in series.values))


def floor_note(floor: Series | None) -> str:
    """The dependency floor's median, and how far below it the RSS budget lies."""
    if floor is None or not floor.values:
        return "not measured"
    median = statistics.median(floor.values)
    return (f"{median:.1f} MiB (n={len(floor.values)}): asyncio, pyzmq with two sockets, "
            f"cryptography, msgpack, PyYAML, structlog, sqlite3 in WAL, loaded as the agent "
            f"loads them (no ssl/_hashlib, autopi_agent/lean.py); the budget is "
            f"{median - BUDGETS['rss']:.1f} MiB below it")


def pss_note(ours: Series, salt: Series | None) -> str:
    """Ours and Salt's idle PSS medians, for the reader weighing RSS's shared pages."""
    if not ours.values:
        return "not measured"
    note = f"ours {statistics.median(ours.values):.1f} MiB"
    if salt is not None and salt.values:
        note += f", Salt 3008 {statistics.median(salt.values):.1f} MiB"
    return note


def single_rows(our: Figures, salt: Figures | None, obd_loaded: bool,
                floor: Series | None = None, agent_from: str = "") -> list[Row]:
    def pick(name: str) -> Series:
        return our.get(name, Series(()))

    def salt_pick(name: str) -> Series | None:
        return salt.get(name, Series(())) if salt is not None else None

    def salt_ms(name: str) -> Series | None:
        value = salt_pick(name)
        return None if value is None else ms(value)

    return [
        Row("Agent idle RSS, authenticated, OBD module not loaded", "MiB",
            pick("agent_rss"), salt_pick("agent_rss"), BUDGETS["rss"],
            "RSS summed over the daemon's processes (salt-minion runs two), read from "
            "/proc/PID/status after the daemon authenticated and idled for the settle time.",
            {"python-OBD imported when the agent starts":
             "yes: this figure includes it" if obd_loaded else "no",
             "floor: the agent's runtime libraries alone, idle (bench/floor.py)":
             floor_note(floor),
             "PSS at the same moment (shared library pages divided among their users)":
             pss_note(pick("agent_pss"), salt_pick("agent_pss")),
             "the agent ran from": agent_from or "the development venv"}),
        Row("Agent start to authenticated (key already accepted)", "ms",
            ms(pick("agent_start")), salt_ms("agent_start"), BUDGETS["start"],
            "From spawning the daemon to its ready line: our `agent.ready` (logged once "
            "_auth is accepted and the publish link is opened), Salt's \"Minion is ready "
            "to receive requests!\". The master key is already cached (a first start is "
            "not counted), as on a car that has been enrolled."),
        Row("`cloud-master run '*' test.ping` CLI wall time, one agent", "ms",
            ms(pick("cli")), salt_ms("cli"), BUDGETS["cli"],
            "The whole command, process start to exit, against a master with one "
            "authenticated agent; Salt: `salt '*' test.ping` against one salt-minion."),
        Row("Client API `cmd('*', 'test.ping')`, one agent", "ms",
            ms(pick("api")), salt_ms("api"), BUDGETS["api"],
            "`MasterClient(sock_dir).cmd` in the benchmark process; Salt: "
            "`salt.client.LocalClient().cmd` in a Salt-venv process. The first call of "
            "each (which connects) is not counted."),
        Row("`autopi-agent call test.ping`", "ms",
            ms(pick("call")), salt_ms("call"), BUDGETS["call"],
            "The whole command, no master involved; Salt: `salt-call --local test.ping`."),
        Row("Master idle PSS, one agent connected", "MiB",
            pick("master_pss"), salt_pick("master_pss"), BUDGETS["pss"],
            "PSS from /proc/PID/smaps_rollup summed over the master's processes "
            "(salt-master with its default 5 worker threads forks about a dozen)."),
    ]


def nofile_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fleet_row(size: int, run: fanout.FleetRun | None, note: str = "") -> Row:
    budget = FLEET_BUDGET_S if size == FLEET_BUDGET_SIZE else None
    if run is None:
        return Row(f"Fan-out: test.ping to {size} agents, publish to all returns", "s",
                   Series(()), None, budget, note or "Not measured in this run (see Problems).")
    complete = sum(count == size for count in run.returned)
    stored_complete = sum(count == size for count, _ in run.stored)
    stored = Series(tuple(seconds for _, seconds in run.stored))
    extra = {"returns per round": f"{min(run.returned)}–{max(run.returned)} of {size}; "
             f"{complete} of {len(run.returned)} rounds complete",
             "master's job cache: all returns stored after":
             f"median {report.fmt(stored.median, 's')} s, p90 {report.fmt(stored.p90, 's')} s "
             f"({stored_complete} of {len(run.stored)} rounds complete)",
             "warm-up round (first job after start, 60 s)": f"{run.warmup_returns} of {size} "
             "returned",
             "fleet authenticated in": f"{run.auth_seconds:.1f} s (after {run.build_seconds:.0f} s "
             "making the Agent objects)",
             "master PSS with the fleet": f"{run.master_pss_mib:.0f} MiB",
             "fleet processes' RSS": f"{run.fleet_rss_mib:.0f} MiB in {run.processes} processes",
             "open files per fleet process": f"{run.fds_per_process} (limit {nofile_limit()})"}
    defect = "" if complete == len(run.returned) else "returns missing at the client"
    return Row(f"Fan-out: test.ping to {size} agents, publish to all returns", "s",
               run.publish, None, budget,
               "One `cloud-master serve`; the agents are real `Agent` objects, "
               f"{size // run.processes} per process in {run.processes} processes (one asyncio "
               "loop and one ZeroMQ context each). Timed with the client API from the "
               "publish request to the last return; a round still incomplete after "
               f"{fanout.ROUND_TIMEOUT:.0f} s counts as that (or as long as the master took "
               "to close it). The job cache line is the master's own view of the same "
               "rounds (job registered to last return stored), read from its SQLite file: "
               "when it is complete and the client's is not, returns were lost between the "
               "master and the client. Salt has no counterpart at this size.",
               extra, defect)


def small_fleet_row(size: int, our: fanout.FleetRun | None,
                    salt: tuple[Series, tuple[int, ...]] | None) -> Row:
    extra = {}
    defects = []
    if our is not None:
        extra["ours: returns per round"] = f"{min(our.returned)}–{max(our.returned)} of {size}"
        if min(our.returned) < size:
            defects.append("our returns missing")
    if salt is not None:
        extra["Salt: returns per round"] = f"{min(salt[1])}–{max(salt[1])} of {size}"
    return Row(f"Fan-out: test.ping to {size} agents / salt-minions", "s",
               our.publish if our else Series(()), salt[0] if salt else None, None,
               f"{size} agents in one process on a cloud-master, and {size} stock "
               "salt-minion daemons on a salt-master; timed by our client API and by "
               "LocalClient.cmd, first round not counted.", extra, "; ".join(defects))


METHOD = """
- Every daemon runs on this machine on 127.0.0.1, with each side's default settings except
  ports, paths and the log file. Ours log JSON at level info to a pipe; salt-master logs at
  warning (its default, with its default 5 worker threads) and salt-minion at info (needed
  for its ready line).
- Single-agent benchmarks: our master and Salt's both stay up, and every sample alternates
  between the two sides (ours then Salt's, then Salt's then ours, ...), so load from other
  work on this shared machine falls on both alike. Memory is read after the daemon idled
  for the settle time (2 s) following its ready line.
- Times are wall-clock (`time.perf_counter`) around the whole operation; memory is read
  from /proc (no psutil). Each row shows the median, the p90 (nearest rank) and the sample
  count; "Salt ÷ ours" is Salt's median over ours (higher is better for us); the verdict
  compares our median with the budget of the issue.
- Agent keys are pre-accepted by writing the public key into the master's
  `pki/master/minions/<id>` (Salt's layout on both masters). Key pairs come from a pool
  cached in `.cache/bench-keys` (made once, in parallel); fleets larger than the pool
  reuse its keys under other ids, which does not change any agent's RSA work.
- Fan-out fleets use the real agent code (`autopi_agent.minion.daemon.Agent`), many per
  process; the fleet processes log at warning. Each fleet gets a fresh master. A
  warm-up round (not counted) lets the start-up announcements drain first. Each agent
  fsyncs its spool for every return; real cars do that on their own storage, in
  parallel, so the fleet's state lives on a tmpfs (/dev/shm) while the master's job cache
  is on the real disk: the figure is the master's, not N agents queueing on one disk.
- The machine is shared and noisy: compare medians within one run, not across runs.
"""


def telemetry_rows(work: Path, problems: Problems) -> list[Row]:
    """The telemetry issue's storage benchmarks: ingest (SQLite, PostgreSQL) and spool drain."""
    from bench import telemetry_ingest, telemetry_spool

    out: list[Row] = []
    figures = [telemetry_ingest.measure_sqlite(work / "tel")]
    try:
        figures.append(telemetry_ingest.measure_postgres())
    except Exception as err:  # no PostgreSQL here: the other figures still count
        problems.append(f"PostgreSQL ingest not measured: {type(err).__name__}: {err}")
    out += telemetry_ingest.rows(figures)
    out += telemetry_spool.rows([telemetry_spool.measure(work / "spool"),
                                 telemetry_spool.measure(work / "spool2", with_store=True)])
    return out


def obd_rows(work: Path, key_dir: Path, ns: argparse.Namespace, problems: Problems) -> list[Row]:
    """The OBD issue's benchmarks: RSS with OBD connected, query rate, remote round trip."""
    from bench import obd_cases

    figures = problems.attempt("OBD benchmarks", lambda: obd_cases.measure(
        work / "obd", key_dir, queries=ns.obd_queries, samples=ns.samples, settle=ns.settle,
        log=log))
    return obd_cases.rows(figures or {})


def logger_rows(work: Path, key_dir: Path, ns: argparse.Namespace,
                problems: Problems) -> list[Row]:
    """The telemetry issue's logger cost: CPU and RSS growth of the agent over a window."""
    from bench import logger_cost

    window = ns.logger_window if ns.logger_window is not None else logger_cost.default_window()
    figures = problems.attempt("logger cost", lambda: logger_cost.measure(
        work / "logger", key_dir, window_s=window, warmup_s=ns.logger_warmup, log=log))
    return logger_cost.rows(figures) if figures is not None else []


def use_product_venv(problems: Problems) -> str:
    """Run the agent from a venv with the runtime dependencies only (bench/product.py)."""
    from bench import product

    log(f"product venv: {product.VENV}")
    bin_dir = problems.attempt("the product venv", product.ensure)
    if bin_dir is None:
        return "the development venv (the product venv could not be built)"
    ours.AGENT_BIN = bin_dir
    numpy = "numpy present" if product.has_module(bin_dir, "numpy") else "no numpy"
    return f"a venv with the runtime dependencies only, as the image installs it ({numpy})"


def _terminate(signum: int, _frame: Any) -> None:
    # Unwind through every finally block, so that no daemon outlives the run.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    ns = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    from autopi_common.logging import setup_logging

    setup_logging("warning")  # the harnesses' own info lines would drown the progress
    began, stamp = time.monotonic(), datetime.datetime.now(datetime.UTC)
    load_start = report.loadavg()
    nofile = procfs.raise_nofile()
    venv = None
    if not ns.no_salt:
        from tests.interop.saltpeer import find_salt_venv

        venv = find_salt_venv()  # SaltPeerError names what is missing
    sizes = [int(s) for s in ns.fleet.split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="ab-", dir="/tmp"))
    problems = Problems()
    rows: list[Row] = []
    try:
        log(f"scratch dir {work}; open-file limit {nofile}")
        pool = keys.ensure_pool(min(max(sizes + [ns.salt_fleet, 1]), keys.DEFAULT_POOL))
        agent_from = use_product_venv(problems)
        sides: list[single.Side] = [ours.OurSide(work / "o", pool[0])]
        if venv is not None:
            sides.append(salt_side.SaltSide(venv, work / "s"))
        figures, failures = single.measure(sides, ns.samples, ns.settle, log)
        problems.extend(failures)
        from bench.floor import floor_rss_mib

        floor = problems.attempt("dependency floor", lambda: Series(tuple(
            floor_rss_mib(ours.AGENT_BIN / "python", settle=ns.settle) for _ in range(5))))
        rows += single_rows(figures["ours"], figures.get("salt"), ours.obd_loaded_at_start(),
                            floor, agent_from)
        obd = obd_rows(work, pool[0], ns, problems)
        rows[1:1] = obd[:1]  # RSS with OBD next to the idle RSS without it
        rows += obd[1:]
        for size in sizes:
            rows.append(fleet(size, pool, nofile, ns.fleet_samples, work, problems))
        if ns.salt_fleet and venv is not None:
            rows.append(small_fleet(ns.salt_fleet, pool, venv, ns.fleet_samples, work, problems))
        rows += telemetry_rows(work, problems)
        rows += logger_rows(work, pool[0], ns, problems)
    finally:
        REAPER.reap()
        if not ns.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - began
    machine = report.Machine.probe(venv.path / "bin" / "python" if venv else None)
    command = "make bench  # = python -m bench.run " + shlex.join(argv if argv is not None
                                                                   else sys.argv[1:])
    ns.out.write_text(report.render(rows, machine, command=command.rstrip(),
                                    date=stamp.strftime("%Y-%m-%d %H:%M UTC"), seconds=elapsed,
                                    load=f"{load_start} at the start, {report.loadavg()} at the end",
                                    method=METHOD, problems=problems))
    print(report.summary(rows))
    log(f"wrote {ns.out} in {elapsed / 60:.1f} min")
    return 1 if problems else 0


def fleet(size: int, pool: list[Path], nofile: int, samples: int, work: Path,
          problems: Problems) -> Row:
    processes = fanout.processes_for(size)
    if size > fanout.max_fleet(nofile, processes):
        note = (f"Skipped: the open-file limit ({nofile}) allows about "
                f"{fanout.max_fleet(nofile, processes)} agents on one master.")
        problems.append(f"fan-out {size}: {note}")
        return fleet_row(size, None, note)
    run = problems.attempt(f"fan-out {size}", lambda: fanout.measure_ours(
        work / f"f{size}", size, pool, samples, log))
    return fleet_row(size, run)


def small_fleet(size: int, pool: list[Path], venv: Any, samples: int, work: Path,
                problems: Problems) -> Row:
    our = problems.attempt(f"fan-out {size} (ours)", lambda: fanout.measure_ours(
        work / f"g{size}", size, pool, samples, log))
    salt = problems.attempt(f"fan-out {size} (Salt)", lambda: fanout.measure_salt(
        venv, work / f"h{size}", size, samples, log))
    return small_fleet_row(size, our, salt)


if __name__ == "__main__":
    sys.exit(main())
