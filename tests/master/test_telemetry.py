"""Telemetry values from the wire, the csv/jsonl writers, and choosing a store by URL."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from cloud_master.telemetry import (
    CSV_FIELDS,
    InvalidSample,
    Sample,
    SqliteTelemetryStore,
    UnknownFormat,
    UnsupportedStore,
    open_store,
    sample_from_wire,
    samples_from_wire,
    write_csv,
    write_jsonl,
)
from cloud_master.telemetry.export import writer_for

GOOD = {"uid": "a1b2c3", "ts": 1_700_000_000.25, "series": "obd.RPM", "value": 812.5, "unit": "rpm"}


def test_sample_from_wire_takes_the_authenticated_minion_id() -> None:
    sample = sample_from_wire("car-1", {**GOOD, "minion_id": "someone-else"})
    assert sample == Sample("car-1", "a1b2c3", 1_700_000_000.25, "obd.RPM", 812.5, None, "rpm")


@pytest.mark.parametrize(("value", "expected"), [(3, 3.0), (True, 1.0), (None, None), (-0.5, -0.5)])
def test_numbers_become_floats(value: Any, expected: float | None) -> None:
    sample = sample_from_wire("car-1", {**GOOD, "value": value})
    assert sample.value == expected and (expected is None or isinstance(sample.value, float))


def test_a_string_value_is_kept_as_text() -> None:
    sample = sample_from_wire("car-1", {"uid": "u", "ts": 1, "series": "obd.VIN",
                                        "value": "WVWZZZ1JZXW000001"})
    assert (sample.value, sample.text, sample.ts) == (None, "WVWZZZ1JZXW000001", 1.0)


@pytest.mark.parametrize(("item", "match"), [
    ("not a map", "must be a map"),
    ({**GOOD, "uid": None}, "'uid' must be a non-empty string"),
    ({**GOOD, "uid": ""}, "'uid' must be a non-empty string"),
    ({**GOOD, "uid": "x" * 65}, "'uid' is longer than 64"),
    ({**GOOD, "series": 7}, "'series' must be a non-empty string"),
    ({**GOOD, "series": "obd\x00RPM"}, "holds a NUL"),
    ({**GOOD, "ts": "yesterday"}, "'ts' must be a finite number"),
    ({**GOOD, "ts": math.inf}, "'ts' must be a finite number"),
    ({**GOOD, "value": math.nan}, "'value' must be a finite number"),
    ({**GOOD, "value": [1]}, "'value' must be a finite number"),
    ({**GOOD, "unit": "u" * 33}, "'unit' is longer than 32"),
    ({**GOOD, "text": 5}, "'text' must be a non-empty string"),
])
def test_malformed_samples_are_refused_with_the_reason(item: Any, match: str) -> None:
    with pytest.raises(InvalidSample, match=match):
        sample_from_wire("car-1", item)


def test_bad_minion_id_is_refused() -> None:
    with pytest.raises(InvalidSample, match="bad minion id"):
        sample_from_wire("", GOOD)


def test_samples_from_wire_keeps_the_good_and_counts_the_bad() -> None:
    samples, rejected = samples_from_wire("car-1", [GOOD, {"ts": 1}, 42, {**GOOD, "uid": "b"}])
    assert [s.uid for s in samples] == ["a1b2c3", "b"] and rejected == 2


SAMPLES = [
    Sample("car-1", "u1", 1_700_000_000.5, "obd.RPM", 812.25, None, "rpm"),
    Sample("car-1", "u2", 1_700_000_001.0, "obd.VIN", None, 'WVW, "quoted"\nline', None),
    Sample("car-2", "u3", 0.1, "power.battery_voltage", 12.6, None, "volt"),
]


def test_csv_has_a_header_and_round_trips_every_field() -> None:
    out = io.StringIO()
    assert write_csv(SAMPLES, out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == CSV_FIELDS
    back = [Sample(r["minion_id"], r["uid"], float(r["ts"]), r["series"],
                   float(r["value"]) if r["value"] else None, r["text"] or None, r["unit"] or None)
            for r in rows]
    assert back == SAMPLES
    assert rows[0]["time"] == "2023-11-14T22:13:20.500000Z"


def test_jsonl_is_one_object_per_line_with_nulls() -> None:
    out = io.StringIO()
    assert write_jsonl(SAMPLES, out) == 3
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert records[1] == {"minion_id": "car-1", "series": "obd.VIN", "ts": 1_700_000_001.0,
                          "time": "2023-11-14T22:13:21.000000Z", "value": None,
                          "text": 'WVW, "quoted"\nline', "unit": None, "uid": "u2"}
    assert [Sample(r["minion_id"], r["uid"], r["ts"], r["series"], r["value"], r["text"], r["unit"])
            for r in records] == SAMPLES


def test_writers_stream_from_an_iterator() -> None:
    consumed = []

    def produce() -> Any:
        for sample in SAMPLES:
            consumed.append(sample)
            yield sample

    out = io.StringIO()
    assert write_jsonl(produce(), out) == 3 and consumed == SAMPLES


def test_unknown_export_format() -> None:
    with pytest.raises(UnknownFormat, match="use one of csv, jsonl"):
        writer_for("xlsx")
    assert issubclass(UnknownFormat, ValueError)


def test_open_store_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for url, path in [("sqlite:///rel.db", tmp_path / "rel.db"),
                      (f"sqlite:///{tmp_path}/abs.db", tmp_path / "abs.db"),
                      (str(tmp_path / "bare.db"), tmp_path / "bare.db")]:
        store = open_store(url)
        try:
            assert isinstance(store, SqliteTelemetryStore)
            store.ingest(SAMPLES[:1])
        finally:
            store.close()
        assert path.exists()


@pytest.mark.parametrize("url", ["mysql://db/x", "", "redis://localhost"])
def test_open_store_refuses_other_schemes(url: str) -> None:
    with pytest.raises(UnsupportedStore, match="unsupported telemetry store"):
        open_store(url)


def test_sqlite_store_needs_a_real_file() -> None:
    with pytest.raises(ValueError, match="needs a file"):
        open_store("sqlite:///:memory:")
