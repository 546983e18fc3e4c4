"""The master's event bus: Salt-style tags, local subscribers and an IPC publisher for the CLI."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
import zmq
import zmq.asyncio

from autopi_proto import codec
from autopi_proto.errors import DecodeError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    """One event: a tag such as ``salt/job/<jid>/ret/<id>`` and its data."""

    tag: str
    data: dict[str, Any]


class Subscription:
    """Events whose tag matches a glob, delivered in order; slow readers lose the oldest."""

    def __init__(self, bus: EventBus, pattern: str, maxsize: int) -> None:
        self.pattern = pattern
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0
        self._bus = bus

    def offer(self, event: Event) -> None:
        if not fnmatch.fnmatchcase(event.tag, self.pattern):
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self._bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()


class EventBus:
    """Fires events to in-process subscribers and, when bound, to an IPC PUB socket."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._pub: zmq.asyncio.Socket | None = None

    def bind(self, ctx: zmq.asyncio.Context, address: str) -> None:
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 10000)
        sock.bind(address)
        self._pub = sock

    def close(self) -> None:
        if self._pub is not None:
            self._pub.close(0)
            self._pub = None

    def subscribe(self, pattern: str = "*", maxsize: int = 10000) -> Subscription:
        sub = Subscription(self, pattern, maxsize)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def fire(self, tag: str, data: dict[str, Any]) -> None:
        """Deliver an event now; never blocks and never raises for a slow subscriber."""
        data = dict(data)
        data.setdefault("_stamp", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()))
        event = Event(tag, data)
        for sub in list(self._subs):
            sub.offer(event)
        if self._pub is not None:
            try:
                self._pub.send_multipart([tag.encode(), codec.packb(data)], flags=zmq.NOBLOCK)
            except (zmq.Again, DecodeError) as err:
                log.warning("event.publish_failed", tag=tag, error=str(err))
