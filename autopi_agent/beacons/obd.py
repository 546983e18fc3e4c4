"""The OBD beacon: ``obd/connected``, ``obd/disconnected`` and ``dtc/new`` vehicle events.

Connection events come from the OBD owner's hooks (on its thread). Trouble codes are read
on an interval through the owner, the way ``obd.dtc`` reads them, but only while the car
is connected: asking a parked car would wake its ECUs and drain its battery.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import structlog

from autopi_agent.beacons.dtc import DtcMemory, Seen, compare
from autopi_agent.obd.car import read_dtcs
from autopi_agent.obd.errors import ObdError
from autopi_agent.obd.owner import ObdOwner, OwnerState

__all__ = ["EventSink", "ObdBeacon"]

log = structlog.get_logger(__name__)

DtcReader = Callable[[], Mapping[str, Any]]


class EventSink(Protocol):
    """What the beacon emits through (a VehicleEvents)."""

    def emit(self, name: str, data: Mapping[str, Any] | None = None) -> bool: ...

    def emit_now(self, name: str, data: Mapping[str, Any] | None = None) -> Awaitable[bool]: ...

    def is_enabled(self, name: str) -> bool: ...


class ObdBeacon:
    """Watches one OBD owner; see the module docstring."""

    def __init__(self, events: EventSink, *, port: str, cachedir: Path,
                 dtc_interval: float) -> None:
        self.events = events
        self.port = port
        self.dtc_interval = dtc_interval
        self._memory = DtcMemory(Path(cachedir) / "beacons" / "dtc.json")
        self._saved_vin, self._seen = self._memory.load()
        self._vin: str | None = None
        self._car = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop = threading.Event()
        self._polls = 0
        self._last_poll: float | None = None
        self._last_error: str | None = None

    # -- the owner's hooks (its thread) ---------------------------------------------------

    def connected(self, grains: Mapping[str, Any]) -> None:
        """The car answered: emit ``obd/connected`` and read its codes soon."""
        found = grains.get("obd")
        car: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        self._vin = str(car["vin"]) if car.get("vin") else self._vin
        self._car = True
        data = {"port": self.port, "protocol": car.get("protocol"),
                "protocol_name": car.get("protocol_name"), "vin": car.get("vin")}
        self.events.emit("obd/connected", {k: v for k, v in data.items() if v is not None})
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the agent's loop has closed
                pass

    def disconnected(self, reason: str) -> None:
        """The car or the adapter was lost: emit ``obd/disconnected`` (once per connection)."""
        if not self._car:
            return
        self._car = False
        self.events.emit("obd/disconnected", {"port": self.port, "reason": reason})

    # -- trouble codes (the agent's loop) ------------------------------------------------

    async def run(self, owner: ObdOwner) -> None:
        """Read the car's codes every ``dtc_interval`` s while it is connected (0: never)."""
        if self.dtc_interval <= 0:
            return
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()

        def read() -> Mapping[str, Any]:
            return owner.call(read_dtcs, what="the DTC beacon", cancelled=self._stop.is_set)

        try:
            while True:
                if owner.state == OwnerState.CAR:
                    await self.poll(read)
                await self._pause()
        finally:
            self._stop.set()  # lets a read blocked in the owner give up (it polls this)

    async def _pause(self) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), self.dtc_interval)
        except TimeoutError:
            pass
        self._wake.clear()

    async def poll(self, read: DtcReader) -> list[dict[str, Any]]:
        """Read the codes once; emit ``dtc/new`` for codes not seen before; returns them."""
        try:
            reading = await asyncio.to_thread(read)
        except ObdError as err:  # adapter gone, NO DATA, timeout: the codes are unknown
            self._last_error = f"{err.kind}: {err}"
            log.info("beacon.dtc_read_failed", error=err.kind, message=str(err))
            return []
        self._polls += 1
        self._last_poll, self._last_error = time.time(), None
        last = self._seen if self._same_car() else frozenset()
        new, current = compare(last, reading)
        if new and self.events.is_enabled("dtc/new"):
            data = {"codes": new, "vin": self._vin, "mil": reading.get("mil")}
            if not await self.events.emit_now("dtc/new", {k: v for k, v in data.items()
                                                          if v is not None}):
                return []  # rate-limited: these codes are still new at the next read
            log.info("beacon.dtc_new", codes=[item["code"] for item in new])
        await self._remember(current)
        return new if self.events.is_enabled("dtc/new") else []

    def _same_car(self) -> bool:
        return self._vin is None or self._saved_vin is None or self._vin == self._saved_vin

    async def _remember(self, current: frozenset[Seen]) -> None:
        vin = self._vin or self._saved_vin
        if current == self._seen and vin == self._saved_vin:
            return
        self._seen, self._saved_vin = current, vin
        try:
            await asyncio.to_thread(self._memory.save, vin, current)
        except OSError as err:
            log.warning("beacon.dtc_memory_unwritable", error=repr(err))

    def status(self) -> dict[str, Any]:
        """The beacon's state, for ``beacons.status``."""
        return {"port": self.port, "car_connected": self._car, "dtc_interval": self.dtc_interval,
                "polls": self._polls, "last_poll": self._last_poll,
                "last_error": self._last_error,
                "known_codes": sorted({code for _, code, _ in self._seen})}
