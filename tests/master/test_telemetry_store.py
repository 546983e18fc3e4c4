"""One suite, two backends: SQLite and a real PostgreSQL server run the same store tests.

PostgreSQL comes from ``tests/pg.py`` (AUTOPI_TEST_POSTGRES_DSN, a private throwaway cluster,
or the local server); without one its cases skip, except under CI where they fail.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud_master.telemetry import IngestResult, Sample, TelemetryStore, open_store
from tests.pg import PgServer, fresh_schema, postgres_server

T0 = 1_700_000_000.0
StoreFactory = Callable[[], TelemetryStore]


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def open_fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores on one fresh database (call it again to reopen, as a restart would)."""
    opened: list[TelemetryStore] = []
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'telemetry.sqlite'}"
        schema = None
    else:
        server: PgServer = request.getfixturevalue("pg")
        schema = fresh_schema(server.dsn)
        url = schema.__enter__()

    def factory() -> TelemetryStore:
        opened.append(open_store(url))
        return opened[-1]

    try:
        yield factory
    finally:
        for store in opened:
            store.close()
        if schema is not None:
            schema.__exit__(None, None, None)


@pytest.fixture
def store(open_fresh: StoreFactory) -> TelemetryStore:
    return open_fresh()


def s(minion: str, uid: str, ts: float, series: str = "obd.RPM", value: float | None = 1.0,
      text: str | None = None, unit: str | None = "rpm") -> Sample:
    return Sample(minion, uid, ts, series, value, text, unit)


def fleet(vehicles: int = 3, per_series: int = 5) -> list[Sample]:
    return [s(f"car-{v}", f"{v}-{name}-{n}", T0 + n, name, float(v * 100 + n))
            for v in range(vehicles) for name in ("obd.RPM", "obd.SPEED") for n in range(per_series)]


def test_ingest_is_idempotent(store: TelemetryStore) -> None:
    batch = fleet()
    assert store.ingest(batch) == IngestResult(stored=30, duplicates=0)
    assert store.ingest(batch) == IngestResult(stored=0, duplicates=30)
    extra = s("car-0", "new", T0 + 99)
    assert store.ingest([*batch[:4], extra]) == IngestResult(stored=1, duplicates=4)
    assert store.ingest([extra, extra]) == IngestResult(stored=0, duplicates=2)
    assert store.ingest([]) == IngestResult(0, 0)
    assert sum(1 for _ in store.scan()) == 31


def test_same_uid_on_two_vehicles_is_two_samples(store: TelemetryStore) -> None:
    assert store.ingest([s("car-1", "u1", T0), s("car-2", "u1", T0)]).stored == 2


def test_latest_per_vehicle_and_series(store: TelemetryStore) -> None:
    store.ingest(fleet())
    store.ingest([s("car-1", "late", T0 - 50, "obd.RPM", -1.0)])  # old sample arriving late
    latest = store.latest()
    assert [(x.minion_id, x.series) for x in latest] == [
        (f"car-{v}", name) for v in range(3) for name in ("obd.RPM", "obd.SPEED")]
    assert all(x.ts == T0 + 4 for x in latest)
    assert [x.value for x in store.latest(["car-1"], ["obd.RPM"])] == [104.0]
    assert [x.minion_id for x in store.latest(["car-2", "car-0"], ["obd.SPEED"])] == ["car-0", "car-2"]
    assert store.latest(["nobody"]) == []


def test_latest_ties_do_not_depend_on_arrival_order(open_fresh: StoreFactory) -> None:
    first, second = open_fresh(), open_fresh()
    a, b = s("car-1", "aaa", T0, value=1.0), s("car-1", "bbb", T0, value=2.0)
    first.ingest([a])
    first.ingest([b])
    second.ingest([s("car-2", "bbb", T0, value=2.0)])
    second.ingest([s("car-2", "aaa", T0, value=1.0)])
    assert [x.uid for x in first.latest()] == ["bbb", "bbb"]


def test_query_one_vehicle_range_merged_by_time(store: TelemetryStore) -> None:
    store.ingest(fleet())
    got = list(store.query("car-1", ["obd.SPEED", "obd.RPM", "obd.MISSING"], since=T0 + 1,
                           until=T0 + 3))
    assert [(x.ts, x.series) for x in got] == [
        (T0 + 1, "obd.RPM"), (T0 + 1, "obd.SPEED"), (T0 + 2, "obd.RPM"), (T0 + 2, "obd.SPEED")]
    assert all(x.minion_id == "car-1" for x in got)
    assert [x.ts for x in store.query("car-1", ["obd.RPM"], limit=2)] == [T0, T0 + 1]
    assert len(list(store.query("car-1", ["obd.RPM"]))) == 5
    assert list(store.query("car-9", ["obd.RPM"])) == []


def test_values_text_and_units_round_trip(store: TelemetryStore) -> None:
    batch = [s("car-1", "a", T0, "obd.VIN", None, "WVWZZZ1JZXW000001", None),
             s("car-1", "b", T0 + 0.123456, "power.battery_voltage", 12.345678901234, None, "volt"),
             s("car-1", "c", T0, "obd.STATUS", None, "ünïcødé, \"quoted\"", None)]
    store.ingest(batch)
    assert sorted(store.scan(), key=lambda x: x.uid) == batch


def test_scan_filters_and_orders_by_vehicle_series_time(store: TelemetryStore) -> None:
    batch = fleet()
    store.ingest(list(reversed(batch)))
    assert list(store.scan()) == sorted(batch, key=lambda x: (x.minion_id, x.series, x.ts))
    picked = list(store.scan(["car-2"], ["obd.SPEED"], since=T0 + 3))
    assert [(x.minion_id, x.series, x.ts) for x in picked] == [
        ("car-2", "obd.SPEED", T0 + 3), ("car-2", "obd.SPEED", T0 + 4)]


def test_export_csv_and_jsonl(store: TelemetryStore) -> None:
    store.ingest(fleet())
    out = io.StringIO()
    assert store.export(out, "csv", minion_ids=["car-0"]) == 10
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 10 and {r["minion_id"] for r in rows} == {"car-0"}
    assert float(rows[0]["ts"]) == T0 and rows[0]["series"] == "obd.RPM"
    out = io.StringIO()
    assert store.export(out, "jsonl", series=["obd.SPEED"], until=T0 + 1) == 3
    assert [json.loads(line)["minion_id"] for line in out.getvalue().splitlines()] == [
        "car-0", "car-1", "car-2"]


def test_a_long_export_streams_while_ingest_goes_on(store: TelemetryStore) -> None:
    store.ingest(fleet(vehicles=5, per_series=400))
    stream = store.scan()
    first = next(stream)
    # The reader holds its own connection: the writer is not blocked by the open export.
    result: list[IngestResult] = []
    writer = threading.Thread(target=lambda: result.append(store.ingest([s("car-9", "x", T0)])))
    writer.start()
    writer.join(timeout=20)
    assert result == [IngestResult(1, 0)]
    rest = list(stream)
    assert first.minion_id == "car-0" and len(rest) == 3999


def test_expire_drops_old_samples_and_stale_latest(store: TelemetryStore) -> None:
    store.ingest(fleet())  # T0 .. T0+4 on every series
    store.ingest([s("car-7", "old", T0 - 1000)])
    assert store.expire(older_than_s=100, now=T0 + 102.5) == 3 * 2 * 3 + 1
    left = list(store.scan())
    assert {x.ts for x in left} == {T0 + 3, T0 + 4}
    assert {x.minion_id for x in store.latest()} == {"car-0", "car-1", "car-2"}
    assert store.expire(older_than_s=100, now=T0 + 102.5) == 0


def test_data_survives_reopening(open_fresh: StoreFactory) -> None:
    first = open_fresh()
    first.ingest(fleet())
    first.close()
    again = open_fresh()
    assert again.ingest(fleet()) == IngestResult(0, 30)
    assert again.ingest([s("car-0", "more", T0 + 10)]) == IngestResult(1, 0)
    assert len(again.latest()) == 6


def test_threads_ingest_concurrently(store: TelemetryStore) -> None:
    results: list[IngestResult] = []
    lock = threading.Lock()

    def agent(v: int) -> None:
        for n in range(10):
            batch = [s(f"car-{v}", f"{v}-{n}-{k}", T0 + n * 10 + k, f"obd.S{k % 3}") for k in range(10)]
            result = store.ingest(batch)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=agent, args=(v,)) for v in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.stored for r in results) == 400 and sum(1 for _ in store.scan()) == 400


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "db" / "telemetry.sqlite"
    store = open_store(f"sqlite:///{path}")
    try:
        store.ingest(fleet(1, 1))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()
    finally:
        store.close()
