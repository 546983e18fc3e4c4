"""Fixtures for the HIL simulator tests: cars that always stop, a thread-leak check, a raw ELM client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hil import CarConfig, ManualClock, SimulatedCar
from tests.hil.helpers import CarFactory, ElmClient


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves simulator threads behind."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return
        time.sleep(0.05)
    pytest.fail(f"threads left running: {[t.name for t in extra]}")


@pytest.fixture
def make_car(tmp_path: Path) -> Iterator[CarFactory]:
    """Start cars on a ManualClock at t=0 (unpaced output, quick ATZ); all are stopped afterwards."""
    cars: list[SimulatedCar] = []

    def factory(clock: ManualClock | None = None, **options: Any) -> SimulatedCar:
        options.setdefault("link_dir", tmp_path)
        options.setdefault("baud", 0)
        options.setdefault("reset_delay", 0.05)
        car = SimulatedCar(CarConfig(**options), clock=clock or ManualClock())
        cars.append(car)
        return car.start()

    yield factory
    for car in cars:
        car.stop()


@pytest.fixture
def elm_client() -> Iterator[Callable[[str], ElmClient]]:
    clients: list[ElmClient] = []

    def connect(url: str) -> ElmClient:
        client = ElmClient(url)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()
