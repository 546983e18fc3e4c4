"""When each minion was last heard from, learnt from the master's event bus."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from cloud_master.events import Event, EventBus


@dataclass(frozen=True, slots=True)
class Sighting:
    """The last event a minion caused: when (unix seconds) and its tag."""

    ts: float
    tag: str


def minion_of(event: Event) -> str | None:
    """The minion an event comes from, or None for the master's own events."""
    parts = event.tag.split("/")
    if len(parts) >= 5 and parts[:2] == ["salt", "job"] and parts[3] == "ret":
        return parts[4]
    if len(parts) >= 3 and parts[:2] == ["salt", "minion"]:
        return parts[2]
    if len(parts) >= 3 and parts[0] == "vehicle":
        return parts[1]
    if event.tag == "salt/auth" and event.data.get("act") == "accept":
        value = event.data.get("id")
        return value if isinstance(value, str) else None
    return None


class Presence:
    """Last sighting per minion id; ``watch`` keeps it current until cancelled."""

    def __init__(self) -> None:
        self._seen: dict[str, Sighting] = {}

    def observe(self, event: Event, now: float | None = None) -> None:
        minion_id = minion_of(event)
        if minion_id:
            self._seen[minion_id] = Sighting(time.time() if now is None else now, event.tag)

    def last_seen(self, minion_id: str) -> Sighting | None:
        return self._seen.get(minion_id)

    async def watch(self, bus: EventBus) -> None:
        """Follow every event on ``bus`` (run it as a task; cancel it to stop)."""
        sub = bus.subscribe("*")
        try:
            while True:
                self.observe(await sub.get())
        finally:
            sub.close()

    def start(self, bus: EventBus) -> asyncio.Task[None]:
        return asyncio.create_task(self.watch(bus), name="presence")
