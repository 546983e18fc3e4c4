"""PostgreSQL faults: a restart under load, a server that is down, concurrent masters.

These own a private throwaway cluster (``tests/pg.py``) because they stop and restart it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cloud_master.telemetry import IngestResult, Sample, StoreUnavailable, TelemetryStore, open_store
from tests.pg import PgCluster, as_url, fresh_schema, private_cluster, require_psycopg

require_psycopg()

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with private_cluster() as owned:
        assert owned is not None
        yield owned


@pytest.fixture
def store(cluster: PgCluster) -> Iterator[TelemetryStore]:
    with fresh_schema(cluster.dsn) as url:
        opened = open_store(url)
        try:
            yield opened
        finally:
            opened.close()


def batches(vehicles: int, rounds: int, per_batch: int) -> list[list[Sample]]:
    return [[Sample(f"car-{v}", f"{v}-{n}-{k}", T0 + n, f"obd.S{k}", float(n), None, None)
             for k in range(per_batch)] for n in range(rounds) for v in range(vehicles)]


def ingest_with_retry(store: TelemetryStore, batch: list[Sample], deadline: float,
                      failures: list[str]) -> IngestResult:
    """What the request server does: retry a batch the store could not take, until it is in."""
    while True:
        try:
            return store.ingest(batch)
        except StoreUnavailable as err:
            failures.append(str(err))
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_restart_under_load_loses_nothing_and_stores_nothing_twice(
        cluster: PgCluster, store: TelemetryStore) -> None:
    work = batches(vehicles=10, rounds=50, per_batch=40)  # 500 batches, 20,000 samples
    results: list[IngestResult] = []
    failures: list[str] = []
    deadline = time.monotonic() + 90

    def agent_traffic() -> None:
        for batch in work:
            results.append(ingest_with_retry(store, batch, deadline, failures))

    sender = threading.Thread(target=agent_traffic)
    sender.start()
    try:
        for at in (120, 300):
            wait_until(functools.partial(lambda n: len(results) >= n, at), f"{at} batches")
            cluster.restart()
    finally:
        sender.join(timeout=100)
    assert not sender.is_alive() and len(results) == len(work)
    # Each restart cut the store's connection: the store raised, the caller retried.
    assert len(failures) >= 2, failures
    total = sum(len(batch) for batch in work)
    assert sum(r.stored + r.duplicates for r in results) == total
    assert store.count() == total
    assert {x.ts for x in store.latest()} == {T0 + 49} and len(store.latest()) == 400


def test_a_server_that_is_down_raises_store_unavailable_then_recovers(
        cluster: PgCluster, store: TelemetryStore) -> None:
    store.ingest(batches(1, 1, 5)[0])
    cluster.halt()
    try:
        for _ in range(2):
            with pytest.raises(StoreUnavailable):
                store.ingest(batches(2, 1, 5)[1])
        with pytest.raises(StoreUnavailable):
            store.latest()
    finally:
        cluster.resume()
    assert store.ingest(batches(2, 1, 5)[1]) == IngestResult(5, 0)
    assert len(store.latest()) == 10


def test_unreachable_server_at_open() -> None:
    url = as_url("host=/nonexistent-autopi-dir port=5 user=nobody dbname=none")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot reach the telemetry database"):
        open_store(url)
    assert issubclass(StoreUnavailable, ConnectionError)
    assert time.monotonic() - started < 10


def test_two_masters_ingesting_overlapping_batches(cluster: PgCluster) -> None:
    work = batches(vehicles=20, rounds=10, per_batch=30)
    with fresh_schema(cluster.dsn) as url:
        masters = [open_store(url), open_store(url)]
        results: list[IngestResult] = []
        lock = threading.Lock()

        def master(store: TelemetryStore, order: list[list[Sample]]) -> None:
            for batch in order:
                result = store.ingest(batch)
                with lock:
                    results.append(result)

        # Both masters get every batch (an agent resending to the other master), in
        # opposite orders: without key-ordered inserts this deadlocks.
        threads = [threading.Thread(target=master, args=(masters[0], work)),
                   threading.Thread(target=master, args=(masters[1], list(reversed(work))))]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            total = sum(len(batch) for batch in work)
            assert sum(r.stored for r in results) == total
            assert sum(r.duplicates for r in results) == total
            assert masters[0].count() == total
        finally:
            for store in masters:
                store.close()
