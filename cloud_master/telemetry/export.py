"""Telemetry export: samples streamed to csv or jsonl text, never all held in memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TextIO

from cloud_master.telemetry.model import Sample, UnknownFormat

__all__ = ["CSV_FIELDS", "FORMATS", "write_csv", "write_jsonl", "writer_for"]

CSV_FIELDS = ("minion_id", "series", "ts", "time", "value", "text", "unit", "uid")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def write_csv(samples: Iterable[Sample], out: TextIO) -> int:
    """A header and one row per sample (``time`` is ``ts`` in ISO 8601 UTC); rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    count = 0
    for s in samples:
        writer.writerow((s.minion_id, s.series, repr(s.ts), _iso(s.ts),
                         "" if s.value is None else repr(s.value),
                         "" if s.text is None else s.text, "" if s.unit is None else s.unit, s.uid))
        count += 1
    return count


def write_jsonl(samples: Iterable[Sample], out: TextIO) -> int:
    """One JSON object per line with the fields of :data:`CSV_FIELDS`; lines written."""
    count = 0
    for s in samples:
        record = {"minion_id": s.minion_id, "series": s.series, "ts": s.ts, "time": _iso(s.ts),
                  "value": s.value, "text": s.text, "unit": s.unit, "uid": s.uid}
        out.write(json.dumps(record, ensure_ascii=False, allow_nan=False))
        out.write("\n")
        count += 1
    return count


FORMATS: dict[str, Callable[[Iterable[Sample], TextIO], int]] = {
    "csv": write_csv,
    "jsonl": write_jsonl,
}


def writer_for(fmt: str) -> Callable[[Iterable[Sample], TextIO], int]:
    """The writer for an export format name."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise UnknownFormat(f"unknown export format {fmt!r}: use one of "
                             f"{', '.join(FORMATS)}") from None
