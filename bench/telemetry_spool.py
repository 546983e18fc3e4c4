"""Benchmark: drain 100,000 buffered samples from the agent's spool (peek, send, ack).

Measures the spool side of R1's delivery loop: the sender peeks a batch in delivery order,
and acks it once the master answered. Run once with the ack right after the peek (spool
only) and once with a real SQLite telemetry store ingesting each batch in between (what the
master does before it acks), both against the budget of 20,000 samples/s.

    python -m bench.telemetry_spool [--samples 100000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from autopi_agent.spool import Spool
from bench.stats import Row, Series
from cloud_master.telemetry.model import TelemetryStore, samples_from_wire
from cloud_master.telemetry.sqlite import SqliteTelemetryStore

__all__ = ["BUDGET_SAMPLES_PER_S", "DrainFigures", "fill", "main", "measure", "rows", "run_drain"]

BUDGET_SAMPLES_PER_S = 20_000.0
SERIES = ("obd.RPM", "obd.SPEED", "obd.COOLANT_TEMP", "obd.ENGINE_LOAD", "power.battery_voltage")


@dataclass(frozen=True, slots=True)
class DrainFigures:
    """One drain: how many samples were delivered and acked, and how long it took."""

    label: str
    samples: int
    seconds: float
    fill_seconds: float

    @property
    def rate(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def fill_rate(self) -> float:
        return self.samples / self.fill_seconds if self.fill_seconds else 0.0


def fill(spool: Spool, samples: int, batch: int = 500) -> float:
    """Buffer ``samples`` telemetry samples with ``put_many``; seconds taken."""
    started = time.perf_counter()
    ts = 1_700_000_000.0
    for start in range(0, samples, batch):
        payloads = []
        for n in range(start, min(samples, start + batch)):
            ts += 0.02
            payloads.append({"ts": ts, "series": SERIES[n % len(SERIES)],
                             "value": float(n % 4000), "unit": "rpm"})
        spool.put_many("telemetry", payloads)
    return time.perf_counter() - started


def run_drain(spool: Spool, store: TelemetryStore | None = None, *, batch: int = 1000,
              minion_id: str = "car-0001") -> tuple[int, float]:
    """Peek, (ingest,) ack until the spool is empty; (samples acked, seconds)."""
    acked = 0
    started = time.perf_counter()
    while items := spool.peek(limit=batch, max_bytes=1024 * 1024):
        if store is not None:
            wire = [{"uid": item.id, **item.data()} for item in items]
            samples, _rejected = samples_from_wire(minion_id, wire)
            store.ingest(samples)
        acked += spool.ack([item.id for item in items])
    return acked, time.perf_counter() - started


def measure(work: Path, *, samples: int = 100_000, batch: int = 1000,
            with_store: bool = False) -> DrainFigures:
    """Fill a fresh spool under ``work`` and drain it, optionally into a SQLite store."""
    label = "spool + sqlite store" if with_store else "spool only"
    tag = "store" if with_store else "plain"
    spool = Spool(work / f"spool-{tag}.sqlite", max_bytes=1024 * 1024 * 1024)
    store = SqliteTelemetryStore(work / f"telemetry-{tag}.sqlite") if with_store else None
    try:
        fill_seconds = fill(spool, samples)
        acked, seconds = run_drain(spool, store, batch=batch)
        if acked != samples or spool.stats().total_count:
            raise RuntimeError(f"drain acked {acked} of {samples} samples")
    finally:
        spool.close()
        if store is not None:
            store.close()
    return DrainFigures(label, acked, seconds, fill_seconds)


def rows(figures: list[DrainFigures]) -> list[Row]:
    """Rows for ``bench.run``: microseconds per sample (lower is better) against the budget."""
    return [Row(name=f"spool drain, {fig.samples:,} samples ({fig.label})", unit="us/sample",
                ours=Series((1e6 / fig.rate if fig.rate else float("inf"),)),
                budget=1e6 / BUDGET_SAMPLES_PER_S,
                note=f">= {BUDGET_SAMPLES_PER_S:,.0f} samples/s",
                extra={"samples/s": f"{fig.rate:,.0f}", "fill samples/s": f"{fig.fill_rate:,.0f}"})
            for fig in figures]


def main(argv: list[str] | None = None) -> int:
    """Run both drains and print samples/s; non-zero if one is under budget."""
    parser = argparse.ArgumentParser(prog="python -m bench.telemetry_spool")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as work:
        for with_store in (False, True):
            fig = measure(Path(work), samples=args.samples, batch=args.batch, with_store=with_store)
            verdict = "pass" if fig.rate >= BUDGET_SAMPLES_PER_S else "FAIL"
            failed |= verdict == "FAIL"
            print(f"{fig.label:22} {fig.rate:>9,.0f} samples/s delivered+acked "
                  f"({fig.samples:,} in {fig.seconds:.2f} s; filled at {fig.fill_rate:,.0f}/s; "
                  f"budget {BUDGET_SAMPLES_PER_S:,.0f}) {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
