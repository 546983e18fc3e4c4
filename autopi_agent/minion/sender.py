"""Drains the spool to the master: job returns one by one, events and telemetry in batches.

An item leaves the spool only when the master answered for it (R1). Failures back off
exponentially with jitter; a wake-up event makes new items go out at once when the link is
healthy. Telemetry goes as one compressed ``_telemetry`` request per batch; a master that
does not know that command (a stock salt-master answers ``{}``) gets the samples as events
instead, so nothing is acknowledged that was not delivered somewhere.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from autopi_agent.spool import Backoff, Item, Kind, Spool
from autopi_agent.transport import MasterLink, TransportError
from autopi_proto import codec
from autopi_proto.errors import AuthenticationError, DecodeError

log = structlog.get_logger(__name__)

LIMITS_EVERY_S = 60.0
IDLE_WAKE_S = 5.0
HELD_EVENTS_CHECK_S = 0.5
NOT_EVENTS: tuple[Kind, ...] = ("return", "telemetry")


class Sender:
    """One agent's outbox drainer."""

    def __init__(self, spool: Spool, link: MasterLink, opts: Mapping[str, Any],
                 events_ready: Callable[[], bool] = lambda: True) -> None:
        self.spool = spool
        # Events wait until we listen to the publisher again: a reactor's job triggered by an
        # event sent earlier would be published to nobody (returns and telemetry need not wait).
        self.events_ready = events_ready
        self.link = link
        self.minion_id = str(opts["id"])
        self.timeout = float(opts.get("return_timeout", 60))
        self.wake = asyncio.Event()
        self.backoff = Backoff(base=1.0, cap=float(opts.get("spool_backoff_max", 60)))
        self.telemetry_cmd = True  # False once the master turned out not to know _telemetry
        self.delivered = 0

    def nudge(self) -> None:
        """New items are waiting: send them now."""
        self.wake.set()

    async def run(self) -> None:
        last_limits = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() - last_limits > LIMITS_EVERY_S:
                last_limits = loop.time()
                await asyncio.to_thread(self._limits)
            self.wake.clear()
            listening = self.events_ready()
            items = await asyncio.to_thread(self.spool.peek, 500, 256 * 1024,
                                            None if listening else NOT_EVENTS)
            if not items:
                await self._idle(IDLE_WAKE_S if listening else HELD_EVENTS_CHECK_S)
                continue
            try:
                await self._deliver(items)
                self.backoff.reset()
            except (TransportError, AuthenticationError, DecodeError) as err:
                delay = self.backoff.next_delay()
                log.warning("spool.send_failed", error=str(err), retry_in=round(delay, 2),
                            waiting=len(items))
                await asyncio.sleep(delay)
            except Exception:  # a dead sender would strand the spool until a restart
                delay = self.backoff.next_delay()
                log.exception("spool.sender_error", retry_in=round(delay, 2), waiting=len(items))
                await asyncio.sleep(delay)

    async def _idle(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.wake.wait(), seconds)
        except TimeoutError:
            pass

    def _limits(self) -> None:
        drops = self.spool.enforce_limits()
        reported = self.spool.report_drops(f"vehicle/{self.minion_id}/spool/dropped")
        if drops.total or reported.total:
            log.warning("spool.dropped", returns=drops.returns, events=drops.events,
                        telemetry=drops.telemetry)

    async def _deliver(self, items: list[Item]) -> None:
        returns = [item for item in items if item.kind == "return"]
        events = [item for item in items if item.kind == "event"]
        samples = [item for item in items if item.kind == "telemetry"]
        for item in returns:
            await self.link.request(item.data(), self.timeout)
            await self._ack([item])
        if events:
            await self._send_events([item.data() for item in events])
            await self._ack(events)
        if samples:
            await self._send_telemetry(samples)
            await self._ack(samples)

    async def _ack(self, items: list[Item]) -> None:
        await asyncio.to_thread(self.spool.ack, [item.id for item in items])
        self.delivered += len(items)

    async def _send_events(self, events: list[dict[str, Any]]) -> None:
        reply = await self.link.request({"cmd": "_minion_event", "id": self.minion_id,
                                         "events": events}, self.timeout)
        if reply is False:
            raise TransportError("the master refused the events")

    async def _send_telemetry(self, samples: list[Item]) -> None:
        wire = [{"uid": item.id, **item.data()} for item in samples]
        if self.telemetry_cmd:
            body = zlib.compress(codec.packb(wire), 6)
            reply = await self.link.request({"cmd": "_telemetry", "id": self.minion_id,
                                             "enc": "zlib", "samples": body}, self.timeout)
            if isinstance(reply, dict) and "stored" in reply:
                return
            if reply is False:
                raise TransportError("the master could not store the samples (will retry)")
            log.info("telemetry.fallback_to_events", reply=str(reply)[:60])
            self.telemetry_cmd = False
        tag = f"vehicle/{self.minion_id}/telemetry"
        await self._send_events([{"tag": tag, "data": {"id": self.minion_id, "samples": wire}}])
