"""The SQLite job cache: jobs, idempotent returns, listing, expiry, concurrent readers."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_master.jobcache import (
    Job,
    JobCache,
    Return,
    SqliteJobCache,
    decode_value,
    encode_value,
)

T0 = 1_700_000_000.0


def job(jid: str, started: float = T0, minions: list[str] | None = None) -> Job:
    return Job(jid=jid, fun="test.ping", arg=["a", 1, {"__kwarg__": True, "x": 2}],
               tgt="car-*", tgt_type="glob", user="root",
               minions=minions if minions is not None else ["car-1", "car-2"], started=started)


def ret(jid: str, minion: str, value: Any = True, received: float = T0 + 1) -> Return:
    return Return(jid=jid, minion_id=minion, fun="test.ping", ret=value, retcode=0,
                  success=True, received=received)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[SqliteJobCache]:
    db = SqliteJobCache(tmp_path / "cache" / "jobs.sqlite")
    yield db
    db.close()


def test_is_a_job_cache(cache: SqliteJobCache) -> None:
    store: JobCache = cache
    assert store is cache


def test_file_is_private_and_in_wal_mode(tmp_path: Path, cache: SqliteJobCache) -> None:
    path = tmp_path / "cache" / "jobs.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cache.save_job(job("1"))
    assert (tmp_path / "cache" / "jobs.sqlite-wal").exists()


def test_job_round_trip(cache: SqliteJobCache) -> None:
    cache.save_job(job("20240101000000000001"))
    record = cache.get_job("20240101000000000001")
    assert record is not None
    assert record.job == job("20240101000000000001")
    assert record.returns == {}
    assert record.missing == ["car-1", "car-2"]


def test_list_target_round_trips(cache: SqliteJobCache) -> None:
    listed = Job("7", "grains.items", [], ["car-1", "car-2"], "list", "ops", ["car-1"], T0)
    cache.save_job(listed)
    record = cache.get_job("7")
    assert record is not None and record.job.tgt == ["car-1", "car-2"]


def test_unknown_job(cache: SqliteJobCache) -> None:
    assert cache.get_job("nope") is None


def test_returns_are_idempotent(cache: SqliteJobCache) -> None:
    cache.save_job(job("1"))
    assert cache.save_return(ret("1", "car-1", {"speed": 42})) is True
    assert cache.save_return(ret("1", "car-1", {"speed": 42})) is False  # a resend
    assert cache.save_return(ret("1", "car-2", False)) is True
    record = cache.get_job("1")
    assert record is not None
    assert set(record.returns) == {"car-1", "car-2"}
    assert record.returns["car-1"].ret == {"speed": 42}
    assert record.missing == []


def test_return_fields_round_trip(cache: SqliteJobCache) -> None:
    cache.save_job(job("1"))
    original = Return("1", "car-1", "obd.query", {"error": "timeout"}, 1, False, T0 + 3.5)
    cache.save_return(original)
    record = cache.get_job("1")
    assert record is not None and record.returns["car-1"] == original


def test_return_before_its_job(cache: SqliteJobCache) -> None:
    cache.save_return(ret("9", "car-1"))
    assert cache.get_job("9") is None
    assert list(cache.get_returns("9")) == ["car-1"]


@pytest.mark.parametrize(
    "value",
    [
        None, True, 0, -3, 2.5, "text", "ünïcode ✓", b"\x00\xffraw", bytearray(b"ba"),
        [1, "a", b"b", None], {"nested": {"list": [1, 2, {"b": b"\x01"}]}},
        {"$bytes": "not really bytes"}, {"$dict": 1}, {"$pairs": []},
        {1: "int key", 2: b"x"}, {"": ""}, [], {},
    ],
)
def test_value_encoding_round_trips(value: Any) -> None:
    decoded = decode_value(encode_value(value))
    expected = bytes(value) if isinstance(value, bytearray) else value
    assert decoded == expected
    assert type(decoded) is type(expected)


def test_tuples_come_back_as_lists() -> None:
    assert decode_value(encode_value((1, (2, 3)))) == [1, [2, 3]]


def test_list_jobs_newest_first(cache: SqliteJobCache) -> None:
    for n in range(5):
        cache.save_job(job(str(n), started=T0 + n))
    assert [j.jid for j in cache.list_jobs()] == ["4", "3", "2", "1", "0"]
    assert [j.jid for j in cache.list_jobs(limit=2)] == ["4", "3"]
    assert [j.jid for j in cache.list_jobs(since=T0 + 3)] == ["4", "3"]


def test_expire(cache: SqliteJobCache) -> None:
    now = T0 + 48 * 3600
    cache.save_job(job("old", started=T0))
    cache.save_return(ret("old", "car-1", received=T0 + 1))
    cache.save_job(job("new", started=now - 3600))
    cache.save_return(ret("new", "car-1", received=now - 3500))
    cache.save_return(ret("orphan", "car-1", received=T0))
    assert cache.expire(24, now=now) == 1
    assert cache.get_job("old") is None and cache.get_returns("old") == {}
    assert cache.get_returns("orphan") == {}
    record = cache.get_job("new")
    assert record is not None and list(record.returns) == ["car-1"]


def test_a_second_connection_sees_writes(tmp_path: Path, cache: SqliteJobCache) -> None:
    reader = SqliteJobCache(tmp_path / "cache" / "jobs.sqlite")
    try:
        cache.save_job(job("1"))
        cache.save_return(ret("1", "car-1"))
        record = reader.get_job("1")
        assert record is not None and list(record.returns) == ["car-1"]
    finally:
        reader.close()


def test_threads_share_one_cache(cache: SqliteJobCache) -> None:
    cache.save_job(job("1", minions=[f"car-{n}" for n in range(40)]))
    errors: list[BaseException] = []

    def writer(first: int) -> None:
        try:
            for n in range(first, first + 10):
                cache.save_return(ret("1", f"car-{n}"))
                cache.list_jobs()
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n * 10,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    record = cache.get_job("1")
    assert record is not None and len(record.returns) == 40 and record.missing == []


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    first = SqliteJobCache(path)
    first.save_job(job("1"))
    first.close()
    second = SqliteJobCache(path)
    try:
        assert second.get_job("1") is not None
    finally:
        second.close()


def test_values_are_frozen() -> None:
    value: Any = job("1")
    with pytest.raises(AttributeError):
        value.jid = "2"
