"""Benchmark: master telemetry ingest from 100 simulated agents into SQLite and PostgreSQL.

The agents run in a separate process (they are other machines in real life) and send
msgpack-encoded batches, as the agent's spool drains them, through a bounded queue. The
master side, which is what is timed, does what the request server will do per batch: decode,
validate (``samples_from_wire``) and ``store.ingest`` in one transaction, with
``synchronous=FULL`` on SQLite and PostgreSQL's default ``synchronous_commit=on``.

    python -m bench.telemetry_ingest [--seconds 10] [--agents 100] [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from bench.stats import Row, Series
from cloud_master.telemetry import open_store
from cloud_master.telemetry.model import TelemetryStore, samples_from_wire

__all__ = ["BUDGET_SAMPLES_PER_S", "IngestFigures", "main", "measure_postgres", "measure_sqlite",
           "rows", "run_ingest"]

BUDGET_SAMPLES_PER_S = {"sqlite": 50_000.0, "postgres": 20_000.0}
# Twenty series per car, as an OBD logger and the power monitor would record them.
SERIES = (
    ("obd.RPM", "rpm"), ("obd.SPEED", "kph"), ("obd.COOLANT_TEMP", "degC"),
    ("obd.ENGINE_LOAD", "percent"), ("obd.THROTTLE_POS", "percent"), ("obd.INTAKE_TEMP", "degC"),
    ("obd.MAF", "gps"), ("obd.FUEL_LEVEL", "percent"), ("obd.TIMING_ADVANCE", "degree"),
    ("obd.INTAKE_PRESSURE", "kPa"), ("obd.SHORT_FUEL_TRIM_1", "percent"),
    ("obd.LONG_FUEL_TRIM_1", "percent"), ("obd.O2_B1S2", "volt"), ("obd.RUN_TIME", "second"),
    ("obd.BAROMETRIC_PRESSURE", "kPa"), ("obd.AMBIANT_AIR_TEMP", "degC"),
    ("power.battery_voltage", "volt"), ("power.battery_current", "ampere"),
    ("acc.x", "g"), ("gnss.speed", "kph"),
)


@dataclass(frozen=True, slots=True)
class IngestFigures:
    """One run: samples processed (stored + duplicates) over the timed seconds."""

    backend: str
    agents: int
    batch: int
    stored: int
    duplicates: int
    seconds: float

    @property
    def samples(self) -> int:
        return self.stored + self.duplicates

    @property
    def rate(self) -> float:
        """Samples per second."""
        return self.samples / self.seconds if self.seconds else 0.0


def _agent_batches(agents: int, batch: int, resend_every: int) -> Iterator[tuple[str, bytes]]:
    """Batches from each agent in turn, as the spool sends them: one series tick at a time."""
    clocks = [1_700_000_000.0 + n * 0.01 for n in range(agents)]
    counters = [0] * agents
    sent = 0
    while True:
        for agent in range(agents):
            items = []
            for _ in range(batch):
                name, unit = SERIES[counters[agent] % len(SERIES)]
                counters[agent] += 1
                if counters[agent] % len(SERIES) == 0:
                    clocks[agent] += 1.0
                items.append({"uid": f"{agent:012x}{counters[agent]:016x}", "ts": clocks[agent],
                              "series": name, "value": float(counters[agent] % 997), "unit": unit})
            packed = msgpack.packb(items, use_bin_type=True)
            yield f"car-{agent:04d}", packed
            sent += 1
            if resend_every and sent % resend_every == 0:
                yield f"car-{agent:04d}", packed  # an ack lost on the way: the agent resends


def _produce(out: Any, stop: Any, agents: int, batch: int, resend_every: int) -> None:
    for item in _agent_batches(agents, batch, resend_every):
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        if stop.is_set():
            break
    out.cancel_join_thread()


def run_ingest(store: TelemetryStore, backend: str, *, agents: int = 100, batch: int = 500,
               seconds: float = 10.0, resend_every: int = 0) -> IngestFigures:
    """Ingest batches from simulated agents for ``seconds``; the master side's figures."""
    ctx = multiprocessing.get_context("spawn")
    batches: Any = ctx.Queue(maxsize=64)
    stop = ctx.Event()
    producer = ctx.Process(target=_produce, args=(batches, stop, agents, batch, resend_every),
                           daemon=True)
    producer.start()
    stored = duplicates = 0
    try:
        batches.get(timeout=60)  # the producer is up: start the clock at steady state
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            minion_id, packed = batches.get(timeout=60)
            samples, _rejected = samples_from_wire(minion_id, msgpack.unpackb(packed, raw=False))
            result = store.ingest(samples)
            stored += result.stored
            duplicates += result.duplicates
    finally:
        stop.set()
        producer.join(timeout=10)
        if producer.is_alive():
            producer.kill()
            producer.join()
        batches.close()
    return IngestFigures(backend, agents, batch, stored, duplicates, elapsed)


def measure_sqlite(work: Path, *, seconds: float = 10.0, agents: int = 100,
                   batch: int = 500) -> IngestFigures:
    """Ingest into a fresh SQLite store under ``work``."""
    store = open_store(f"sqlite:///{work / 'telemetry.sqlite'}")
    try:
        return run_ingest(store, "sqlite", agents=agents, batch=batch, seconds=seconds)
    finally:
        store.close()


def measure_postgres(dsn: str | None = None, *, seconds: float = 10.0, agents: int = 100,
                     batch: int = 500) -> IngestFigures:
    """Ingest into PostgreSQL at ``dsn`` (in a fresh schema), or a private throwaway cluster."""
    from tests.pg import fresh_schema, private_cluster

    dsn = dsn or os.environ.get("AUTOPI_BENCH_POSTGRES_DSN") or None
    with private_cluster(enabled=dsn is None) as cluster:
        base = dsn or (cluster.dsn if cluster else "")
        with fresh_schema(base) as schema_dsn:
            store = open_store(schema_dsn)
            try:
                return run_ingest(store, "postgres", agents=agents, batch=batch, seconds=seconds)
            finally:
                store.close()


def rows(figures: list[IngestFigures]) -> list[Row]:
    """Rows for ``bench.run``: microseconds per sample (lower is better) against the budget."""
    out = []
    for fig in figures:
        budget = BUDGET_SAMPLES_PER_S[fig.backend]
        out.append(Row(
            name=f"telemetry ingest, {fig.agents} agents -> {fig.backend}", unit="us/sample",
            ours=Series((1e6 / fig.rate if fig.rate else float("inf"),)), budget=1e6 / budget,
            note=f">= {budget:,.0f} samples/s",
            extra={"samples/s": f"{fig.rate:,.0f}", "samples": str(fig.samples)}))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print samples/s per backend; non-zero if one is under budget."""
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry_ingest")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--dsn", default=None, help="PostgreSQL server to use (else a private one)")
    args = parser.parse_args(argv)
    figures = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as work:
            figures.append(measure_sqlite(Path(work), seconds=args.seconds, agents=args.agents,
                                          batch=args.batch))
    if args.backend in ("postgres", "both"):
        figures.append(measure_postgres(args.dsn, seconds=args.seconds, agents=args.agents,
                                        batch=args.batch))
    failed = False
    for fig in figures:
        budget = BUDGET_SAMPLES_PER_S[fig.backend]
        verdict = "pass" if fig.rate >= budget else "FAIL"
        failed |= verdict == "FAIL"
        print(f"{fig.backend:9} {fig.rate:>10,.0f} samples/s  ({fig.samples:,} samples from "
              f"{fig.agents} agents in {fig.seconds:.1f} s, batch {fig.batch}; "
              f"budget {budget:,.0f}) {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
