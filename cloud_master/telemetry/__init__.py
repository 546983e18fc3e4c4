"""Telemetry on the master: samples from agents, stored idempotently in SQLite or PostgreSQL.

``open_store(url)`` picks the backend: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``
(or a bare file path) for SQLite; ``postgresql://…`` (any libpq URL or ``key=value`` string
with ``postgresql`` as its scheme) for PostgreSQL, which needs the ``postgres`` extra
(psycopg 3).
"""

from __future__ import annotations

from cloud_master.telemetry.export import CSV_FIELDS, FORMATS, write_csv, write_jsonl
from cloud_master.telemetry.model import (
    IngestResult,
    InvalidSample,
    Sample,
    StoreUnavailable,
    TelemetryError,
    TelemetryStore,
    UnknownFormat,
    UnsupportedStore,
    sample_from_wire,
    samples_from_wire,
)
from cloud_master.telemetry.sqlite import SqliteTelemetryStore

__all__ = ["CSV_FIELDS", "FORMATS", "IngestResult", "InvalidSample", "Sample",
           "SqliteTelemetryStore", "StoreUnavailable", "TelemetryError", "TelemetryStore",
           "UnknownFormat", "UnsupportedStore", "open_store", "sample_from_wire",
           "samples_from_wire", "write_csv", "write_jsonl"]


def open_store(url: str) -> TelemetryStore:
    """The telemetry store a URL names; raises UnsupportedStore for any other scheme."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from cloud_master.telemetry.postgres import PostgresTelemetryStore
        except ImportError as err:
            raise UnsupportedStore(
                "a PostgreSQL telemetry store needs psycopg 3: "
                "pip install 'autopi-telematics[postgres]'") from err
        return PostgresTelemetryStore(url)
    if url.startswith("sqlite:///"):
        return SqliteTelemetryStore(url[len("sqlite:///"):])
    if "://" in url or not url:
        raise UnsupportedStore(f"unsupported telemetry store {url!r}: use sqlite:///path.db "
                               "or postgresql://user@host/db")
    return SqliteTelemetryStore(url)
