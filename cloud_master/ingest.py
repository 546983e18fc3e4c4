"""Telemetry ingest: batches from agents into the telemetry store, on one writer thread."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from cloud_master.telemetry import TelemetryStore, open_store
from cloud_master.telemetry.model import samples_from_wire

log = structlog.get_logger(__name__)


def store_url(opts: dict[str, Any]) -> str:
    """The configured store, or SQLite in the cache directory."""
    return str(opts.get("telemetry_store") or f"sqlite:///{Path(opts['cachedir']) / 'telemetry.sqlite'}")


class TelemetryIngest:
    """Owns the store; every write goes through one thread so the loop never blocks on I/O."""

    def __init__(self, store: TelemetryStore) -> None:
        self.store = store
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telemetry")

    @classmethod
    def from_opts(cls, opts: dict[str, Any]) -> TelemetryIngest:
        return cls(open_store(store_url(opts)))

    async def ingest(self, minion_id: str, items: list[Any]) -> tuple[int, int, int, list[str]]:
        """Store a batch (idempotent); returns stored, duplicates, rejected and the series seen."""
        samples, rejected = samples_from_wire(minion_id, items)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._writer, self.store.ingest, samples)
        series = sorted({sample.series for sample in samples})
        return result.stored, result.duplicates, rejected, series

    async def expire(self, older_than_s: float) -> int:
        loop = asyncio.get_running_loop()
        removed = await loop.run_in_executor(self._writer, self.store.expire, older_than_s)
        if removed:
            log.info("telemetry.expired", samples=removed)
        return int(removed)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.store.close()
