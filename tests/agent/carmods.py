"""Execution functions for scheduler and logger tests: recorders and a programmable fake car.

Registered in a test Loader under any module name (``car``, or ``obd`` so that a logger's
default ``obd.query_many`` reaches the fake car in ``ctx.services["car"]``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from autopi_agent.minion.context import AgentContext, WithRetcode
from autopi_agent.minion.errors import CommandExecutionError
from autopi_proto.messages import JobReturn

__all__ = ["FakeCar", "battery", "fail", "hold", "query_many", "record", "stamp"]


async def record(ctx: AgentContext, value: Any = None) -> Any:
    """Append ``value`` to ``ctx.services["calls"]`` and return it."""
    ctx.services.setdefault("calls", []).append(value)
    return value


async def stamp(ctx: AgentContext) -> float:
    """Append the test clock's monotonic time to ``ctx.services["calls"]``."""
    now = float(ctx.services["clock"].monotonic())
    ctx.services.setdefault("calls", []).append(now)
    return now


async def hold(ctx: AgentContext, name: str) -> str:
    """Count a start in ``calls``, then wait until the test sets the asyncio.Event ``name``."""
    ctx.services.setdefault("calls", []).append(name)
    event: asyncio.Event = ctx.services[name]
    await event.wait()
    return f"{name} released"


async def fail() -> None:
    """Fail as a hardware module does."""
    raise CommandExecutionError("adapter_gone: unplugged", retcode=47)


class FakeCar:
    """What the fake obd functions answer: values by command, or failures."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {"RPM": 800.0, "SPEED": 0.0,
                                                      "COOLANT_TEMP": 85.0})
        self.units = {"RPM": "rpm", "SPEED": "km/h", "COOLANT_TEMP": "°C", "FUEL_LEVEL": "%"}
        self.failure: tuple[str, int] | None = None  # the whole read fails: (kind, retcode)
        self.missing: dict[str, str] = {}  # command -> error kind, the others still answer
        self.voltage = 12.6
        self.reads = 0
        self.stamp: float | None = None  # the readings' timestamp, when set


def query_many(ctx: AgentContext, *names: str) -> WithRetcode:
    """Answer like obd.query_many from ``ctx.services["car"]``."""
    car: FakeCar = ctx.services["car"]
    car.reads += 1
    if car.failure is not None:
        kind, retcode = car.failure
        raise CommandExecutionError(f"{kind}: the fake car says so", retcode=retcode)
    out: dict[str, Any] = {}
    first_failure = 0
    for name in names:
        if name in car.missing:
            out[name] = {"error": car.missing[name], "message": f"{name}: no answer"}
            first_failure = first_failure or 42
            continue
        reading = {"command": name, "value": car.values.get(name), "unit": car.units.get(name)}
        if car.stamp is not None:
            reading["timestamp"] = car.stamp
        out[name] = reading
    return WithRetcode(out, first_failure)


def battery(ctx: AgentContext) -> dict[str, Any]:
    """Answer like obd.battery."""
    car: FakeCar = ctx.services["car"]
    car.reads += 1
    if car.failure is not None:
        kind, retcode = car.failure
        raise CommandExecutionError(f"{kind}: the fake car says so", retcode=retcode)
    return {"voltage": car.voltage, "unit": "V"}


class BrokenReturner:
    """A returner that always fails (for fan-out tests)."""

    async def send(self, ret: JobReturn) -> None:
        raise ConnectionError("the collector is down")

    async def aclose(self) -> None:
        return None


class SlowReturner:
    """A returner that never answers (for time-limit tests)."""

    async def send(self, ret: JobReturn) -> None:
        await asyncio.sleep(3600)

    async def aclose(self) -> None:
        return None


class ListReturner:
    """Keeps what it is sent in ``ctx.services["returned"]``."""

    def __init__(self, ctx: AgentContext) -> None:
        self.kept: list[JobReturn] = ctx.services.setdefault("returned", [])
        self.closed = False

    async def send(self, ret: JobReturn) -> None:
        self.kept.append(ret)

    async def aclose(self) -> None:
        self.closed = True


def broken_returner(ctx: AgentContext, settings: Mapping[str, Any]) -> BrokenReturner:
    return BrokenReturner()


def slow_returner(ctx: AgentContext, settings: Mapping[str, Any]) -> SlowReturner:
    return SlowReturner()


def list_returner(ctx: AgentContext, settings: Mapping[str, Any]) -> ListReturner:
    return ListReturner(ctx)


def exploding_factory(ctx: AgentContext, settings: Mapping[str, Any]) -> ListReturner:
    raise RuntimeError("no collector library")
