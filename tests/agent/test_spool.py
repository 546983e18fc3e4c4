"""The agent's spool: ids, delivery order, acks, limits and drop reports, recovery, threads."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import msgpack
import pytest

from autopi_agent.spool import DROP_EVENT_TAG, Drops, ItemTooLarge, Spool


class Clock:
    """A settable wall clock for age limits."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(n: int) -> dict[str, object]:
    return {"ts": 1_700_000_000.0 + n, "series": "obd.RPM", "value": float(n), "unit": "rpm"}


def size_of(payload: Mapping[str, object]) -> int:
    return len(msgpack.packb(payload, use_bin_type=True))


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool" / "spool.sqlite") as s:
        yield s


def everything(spool: Spool) -> list[str]:
    return [item.id for item in spool.peek(limit=10**6, max_bytes=1 << 40)]


def test_file_is_private_in_wal_mode(tmp_path: Path, spool: Spool) -> None:
    path = tmp_path / "spool" / "spool.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    spool.put("telemetry", sample(1))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_round_trip_keeps_payload_kind_and_time(tmp_path: Path) -> None:
    clock = Clock(1234.5)
    with Spool(tmp_path / "s.sqlite", clock=clock) as spool:
        payload = {"jid": "20240101", "ret": {"a": [1, 2.5, None, b"\x00raw"]}, "retcode": 0}
        item_id = spool.put("return", payload)
        (item,) = spool.peek()
    assert (item.id, item.kind, item.created) == (item_id, "return", 1234.5)
    assert item.data() == payload
    assert item.size == size_of(payload)


def test_returns_then_events_then_telemetry_each_in_put_order(spool: Spool) -> None:
    t1 = spool.put_many("telemetry", [sample(1), sample(2)])
    r1 = spool.put("return", {"jid": "1"})
    e1 = spool.put("event", {"tag": "a"})
    t2 = spool.put("telemetry", sample(3))
    r2 = spool.put("return", {"jid": "2"})
    assert everything(spool) == [r1, r2, e1, *t1, t2]
    assert [i.id for i in spool.peek(kinds=["telemetry"])] == [*t1, t2]
    assert [i.id for i in spool.peek(kinds=["event", "return"])] == [r1, r2, e1]


def test_ids_unique_and_sorted_across_reopen_and_recreation(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ids = []
    for _ in range(3):
        with Spool(path) as spool:
            ids += spool.put_many("telemetry", [sample(n) for n in range(5)])
    assert ids == sorted(ids) and len(set(ids)) == 15
    with Spool(path) as spool:
        spool.ack(ids)
    path.unlink()
    with Spool(path) as spool:
        fresh = spool.put("telemetry", sample(0))
    # A recreated file gets a new random tag, so old ids (maybe held by the master) never recur.
    assert fresh not in ids and fresh[:12] != ids[0][:12]


def test_ack_removes_only_given_ids_and_ignores_foreign_ones(tmp_path: Path, spool: Spool) -> None:
    ids = spool.put_many("telemetry", [sample(n) for n in range(4)])
    with Spool(tmp_path / "other.sqlite") as other:
        foreign = other.put("telemetry", sample(9))
    assert spool.ack([ids[1], ids[3], foreign]) == 2
    assert spool.ack([ids[1]]) == 0
    assert everything(spool) == [ids[0], ids[2]]
    with pytest.raises(ValueError, match="not a spool item id"):
        spool.ack(["nonsense"])
    with pytest.raises(ValueError, match="not a spool item id"):
        spool.ack([ids[0][:12] + "z" * 16])


def test_peek_respects_limit_and_bytes_but_returns_at_least_one(spool: Spool) -> None:
    ids = spool.put_many("telemetry", [sample(n) for n in range(10)])
    one = size_of(sample(0))
    assert [i.id for i in spool.peek(limit=3)] == ids[:3]
    assert [i.id for i in spool.peek(max_bytes=one * 4 + 1)] == ids[:4]
    assert [i.id for i in spool.peek(max_bytes=1)] == ids[:1]
    assert spool.peek(limit=0)[0].id == ids[0]


def test_items_survive_close_and_reopen(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        ids = spool.put_many("telemetry", [sample(n) for n in range(3)])
        ret = spool.put("return", {"jid": "7"})
        spool.ack(ids[:1])
    with Spool(tmp_path / "s.sqlite") as spool:
        assert everything(spool) == [ret, *ids[1:]]
        assert spool.peek()[0].data() == {"jid": "7"}


def test_byte_limit_drops_oldest_telemetry_first_and_keeps_returns(tmp_path: Path) -> None:
    one = size_of(sample(0))
    ret_payload = {"jid": "1", "ret": "x" * 50}
    limit = one * 10 + size_of(ret_payload)
    with Spool(tmp_path / "s.sqlite", max_bytes=limit) as spool:
        ret = spool.put("return", ret_payload)
        ids = spool.put_many("telemetry", [sample(n) for n in range(10)])
        assert spool.stats().dropped_since_start == Drops()
        newer = spool.put_many("telemetry", [sample(n) for n in range(10, 13)])
        kept = everything(spool)
        stats = spool.stats()
    assert kept == [ret, *ids[3:], *newer]
    assert stats.total_bytes <= limit
    assert stats.dropped_since_start == Drops(telemetry=3)
    assert stats.dropped_total == stats.unreported == Drops(telemetry=3)


def test_byte_limit_drops_events_after_telemetry_and_returns_last(tmp_path: Path) -> None:
    ret_payload, event_payload = {"jid": "1", "r": "x" * 30}, {"tag": "t", "d": "y" * 30}
    limit = size_of(ret_payload) * 3
    with Spool(tmp_path / "s.sqlite", max_bytes=limit) as spool:
        spool.put("telemetry", sample(0))
        returns = [spool.put("return", ret_payload) for _ in range(2)]
        spool.put("event", event_payload)  # over: the sample goes, then the event still fits
        assert spool.stats().dropped_since_start == Drops(telemetry=1)
        returns.append(spool.put("return", ret_payload))  # over again: only the event is left
        assert everything(spool) == returns
        assert spool.stats().dropped_since_start == Drops(events=1, telemetry=1)
        latest = spool.put("return", ret_payload)  # returns alone exceed the limit: oldest goes
        assert everything(spool) == [*returns[1:], latest]
        assert spool.stats().dropped_since_start == Drops(returns=1, events=1, telemetry=1)


def test_item_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite", max_bytes=100) as spool:
        with pytest.raises(ItemTooLarge, match="exceeds the spool limit"):
            spool.put("telemetry", {"blob": "x" * 200})
        assert spool.stats().total_count == 0


def test_age_limits_per_kind(tmp_path: Path) -> None:
    clock = Clock()
    with Spool(tmp_path / "s.sqlite", max_age_s=100, max_age_returns_s=1000, clock=clock) as spool:
        old_t, old_e, old_r = (spool.put("telemetry", sample(0)), spool.put("event", {"a": 1}),
                               spool.put("return", {"jid": "1"}))
        clock.now += 60
        new_t = spool.put("telemetry", sample(1))
        clock.now += 50  # the first three are 110 s old, the newest sample 50 s
        assert spool.enforce_limits() == Drops(events=1, telemetry=1)
        assert everything(spool) == [old_r, new_t]
        assert old_t not in everything(spool) and old_e not in everything(spool)
        clock.now += 1000
        assert spool.enforce_limits() == Drops(returns=1, telemetry=1)
        assert spool.stats().total_count == 0
        assert spool.stats().dropped_total == Drops(returns=1, events=1, telemetry=2)


def test_report_drops_writes_one_event_atomically_and_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path, max_bytes=size_of(sample(0)) * 2) as spool:
        spool.put_many("telemetry", [sample(n) for n in range(5)])
    with Spool(path, max_bytes=size_of(sample(0)) * 100) as spool:
        assert spool.stats().dropped_since_start == Drops()
        assert spool.stats().unreported == Drops(telemetry=3)
        assert spool.report_drops() == Drops(telemetry=3)
        assert spool.report_drops() == Drops()
        (event,) = spool.peek(kinds=["event"])
        stats = spool.stats()
    assert event.data() == {"tag": DROP_EVENT_TAG, "data": {
        "dropped": {"return": 0, "event": 0, "telemetry": 3},
        "dropped_total": {"return": 0, "event": 0, "telemetry": 3}}}
    assert stats.unreported == Drops() and stats.dropped_total == Drops(telemetry=3)
    assert stats.count == {"return": 0, "event": 1, "telemetry": 2}


def test_stats_counts_bytes_and_oldest(tmp_path: Path) -> None:
    clock = Clock(100.0)
    with Spool(tmp_path / "s.sqlite", clock=clock) as spool:
        spool.put_many("telemetry", [sample(1), sample(2)])
        clock.now = 200.0
        spool.put("return", {"jid": "1"})
        stats = spool.stats()
    assert stats.count == {"return": 1, "event": 0, "telemetry": 2}
    assert stats.bytes["telemetry"] == size_of(sample(1)) + size_of(sample(2))
    assert stats.oldest == {"return": 200.0, "event": None, "telemetry": 100.0}
    assert stats.file_bytes > 0


def test_corrupt_file_is_set_aside_and_a_fresh_spool_starts(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database at all" * 200)
    with Spool(path) as spool:
        assert spool.recovered_from is not None and spool.recovered_from.exists()
        assert spool.recovered_from.read_bytes().startswith(b"this is not a database")
        item_id = spool.put("return", {"jid": "1"})
        assert everything(spool) == [item_id]


def test_unknown_kind_is_refused(spool: Spool) -> None:
    with pytest.raises(ValueError, match="unknown spool item kind"):
        spool.put("sample", {})  # type: ignore[arg-type]


def test_threads_share_one_spool(spool: Spool) -> None:
    ids: list[list[str]] = [[] for _ in range(4)]

    def writer(n: int) -> None:
        for k in range(50):
            ids[n].extend(spool.put_many("telemetry", [sample(k), sample(k + 1)]))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [i for chunk in ids for i in chunk]
    assert len(set(flat)) == 400
    assert sorted(everything(spool)) == sorted(flat)
    for chunk in ids:
        assert chunk == sorted(chunk)  # each thread's puts keep their order


def test_two_spools_in_one_process_are_independent(tmp_path: Path) -> None:
    with Spool(tmp_path / "a.sqlite") as a, Spool(tmp_path / "b.sqlite") as b:
        ida = a.put("telemetry", sample(1))
        idb = b.put("telemetry", sample(2))
        assert everything(a) == [ida] and everything(b) == [idb]
        assert b.ack([ida]) == 0 and everything(a) == [ida]


def test_close_twice_is_harmless(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    spool.close()
    spool.close()
    with pytest.raises(sqlite3.ProgrammingError):
        spool.put("telemetry", sample(0))


def test_a_drained_spool_gives_its_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as spool:
        for _ in range(20):
            spool.put_many("telemetry", [{"blob": "x" * 1000} for _ in range(100)])
        spool.ack(everything(spool))
        spool.enforce_limits()
        db = sqlite3.connect(path)
        try:
            free, pages = (db.execute(f"PRAGMA {name}").fetchone()[0]
                           for name in ("freelist_count", "page_count"))
        finally:
            db.close()
    assert free <= 256 and pages < 2_000_000 // 4096
