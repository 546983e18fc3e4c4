"""Vehicle events (``vehicle/<id>/ignition/on`` ...): filtered, rate-limited, spooled for the master.

One :class:`VehicleEvents` per agent. Anything may call :meth:`VehicleEvents.emit`: the
agent's loop, a job's worker thread, the OBD owner thread. The event goes into the durable
spool (through the agent's ``fire_event``), so it reaches the master's bus even after hours
offline. Events emitted before the agent's loop runs are held in memory until it does.
"""

from __future__ import annotations

import asyncio
import collections
import fnmatch
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from autopi_common.config import Field, non_negative, validate

__all__ = ["VEHICLE_EVENTS_SCHEMA", "EventSettings", "VehicleEvents", "check_rate_limits"]

log = structlog.get_logger(__name__)

Fire = Callable[[str, dict[str, Any]], Awaitable[str]]
_Entry = tuple[str, dict[str, Any], "Future[bool] | None"]  # tag, data, who waits for it
_EARLY_LIMIT = 256  # events kept in memory before the loop runs; a boot storm drops the oldest


def check_rate_limits(value: Mapping[str, Any]) -> str | None:
    """None when every value is a number of seconds >= 0 (keys: ``default``, names, globs)."""
    for key, seconds in value.items():
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            return (f"a mapping of event names or globs to seconds >= 0 "
                    f"(entry {key!r} is {seconds!r})")
    return None


VEHICLE_EVENTS_SCHEMA: tuple[Field, ...] = (
    Field("enabled", "bool", True, "Send vehicle events (vehicle/<id>/...) to the master."),
    Field("disabled", "list[str]", [],
          "Event names or globs never sent, such as battery/* or obd/disconnected."),
    Field("rate_limit", "dict", {},
          "Least seconds between two events of one name: {default: S, NAME_OR_GLOB: S}; "
          "an exact name wins over a glob, a glob over default (0: no limit).",
          check=check_rate_limits),
    Field("dtc_interval", "float", 300,
          "Seconds between trouble-code reads while the car is connected (dtc/new); "
          "0 turns them off.", check=non_negative),
)


@dataclass(frozen=True, slots=True)
class EventSettings:
    """The validated ``vehicle_events:`` section (see VEHICLE_EVENTS_SCHEMA)."""

    enabled: bool = True
    disabled: tuple[str, ...] = ()
    rate_limit: tuple[tuple[str, float], ...] = ()
    default_rate_limit: float = 0.0
    dtc_interval: float = 300.0

    @classmethod
    def from_opts(cls, section: Mapping[str, Any] | None) -> EventSettings:
        """Settings from the agent config's ``vehicle_events`` dict; raises ConfigError."""
        values = validate(dict(section or {}), VEHICLE_EVENTS_SCHEMA, source="agent config",
                          base_dir=Path.cwd(), prefix="vehicle_events.")
        limits = {str(k): float(v) for k, v in values["rate_limit"].items()}
        default = limits.pop("default", 0.0)
        return cls(enabled=values["enabled"], disabled=tuple(values["disabled"]),
                   rate_limit=tuple(limits.items()), default_rate_limit=default,
                   dtc_interval=values["dtc_interval"])

    def is_disabled(self, name: str) -> bool:
        """Whether ``name`` is switched off (all events, or by a ``disabled`` glob)."""
        return not self.enabled or any(fnmatch.fnmatchcase(name, g) for g in self.disabled)

    def min_gap(self, name: str) -> float:
        """Least seconds between two ``name`` events: exact name, then first glob, then default."""
        for key, seconds in self.rate_limit:
            if key == name:
                return seconds
        for key, seconds in self.rate_limit:
            if fnmatch.fnmatchcase(name, key):
                return seconds
        return self.default_rate_limit


class VehicleEvents:
    """The agent's one emitter of ``vehicle/<minion_id>/<name>`` events. Thread-safe."""

    def __init__(self, minion_id: str, fire: Fire, settings: Mapping[str, Any] | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = EventSettings.from_opts(settings)
        self.minion_id = minion_id
        self._fire = fire
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._counts: dict[str, collections.Counter[str]] = {
            "emitted": collections.Counter(), "rate_limited": collections.Counter(),
            "disabled": collections.Counter(), "failed": collections.Counter()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._early: collections.deque[_Entry] = collections.deque(maxlen=_EARLY_LIMIT)
        self._queue: collections.deque[_Entry] = collections.deque()  # the loop's only
        self._writer: asyncio.Task[None] | None = None

    def tag(self, name: str) -> str:
        """The full event tag for ``name``: ``vehicle/<minion_id>/<name>``."""
        return f"vehicle/{self.minion_id}/{name}"

    def is_enabled(self, name: str) -> bool:
        """Whether an event ``name`` would be sent at all (ignoring the rate limit)."""
        return not self.settings.is_disabled(name)

    # -- emitting ------------------------------------------------------------------------

    def emit(self, name: str, data: Mapping[str, Any] | None = None) -> bool:
        """Queue event ``name`` for the master; False when disabled or rate-limited.

        Returns at once (the spool write happens on the agent's loop, in emission order);
        callable from any thread. Use :meth:`emit_now` to wait until it is on disk.
        """
        payload = self._admit(name, data)
        if payload is None:
            return False
        return self._submit(self.tag(name), payload, None)

    async def emit_now(self, name: str, data: Mapping[str, Any] | None = None) -> bool:
        """Like :meth:`emit`, but returns once the event is in the spool (before sleeping)."""
        payload = self._admit(name, data)
        if payload is None:
            return False
        tag = self.tag(name)
        if self._loop is None:  # the agent is not running yet: spool from here
            return await self._spool(tag, payload)
        done: Future[bool] = Future()
        if not self._submit(tag, payload, done):
            return False
        return await asyncio.wrap_future(done)

    def _admit(self, name: str, data: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The event's data if ``name`` may go out now (counted either way), else None."""
        if not name or name.startswith("/") or name.endswith("/"):
            raise ValueError(f"bad vehicle event name {name!r}: use a path such as 'ignition/on'")
        if self.settings.is_disabled(name):
            self._count("disabled", name)
            return None
        gap = self.settings.min_gap(name)
        with self._lock:
            now = self._clock()
            last = self._last.get(name)
            if gap > 0 and last is not None and now - last < gap:
                self._counts["rate_limited"][name] += 1
                limited = True
            else:
                self._last[name] = now
                limited = False
        if limited:
            log.debug("vehicle_event.rate_limited", name=name, min_gap=gap)
            return None
        payload = dict(data or {})
        payload.setdefault("ts", time.time())  # when it happened, not when it reached the master
        return payload

    # -- on the agent's loop ---------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Spool on ``loop`` from now on (the agent calls it when it runs); sends held events."""
        with self._lock:
            self._loop = loop
            early = list(self._early)
            self._early.clear()
        for entry in early:
            loop.call_soon_threadsafe(self._enqueue, entry)

    async def drain(self) -> None:
        """Wait until every emitted event is in the spool (before the agent closes it)."""
        await asyncio.sleep(0)  # let emits from other threads reach the queue
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})  # never cancels the writer

    def _submit(self, tag: str, payload: dict[str, Any], done: Future[bool] | None) -> bool:
        entry = (tag, payload, done)
        with self._lock:
            loop = self._loop
            if loop is None:
                self._early.append(entry)
                return True
        if _running_loop() is loop:
            self._enqueue(entry)
            return True
        try:
            loop.call_soon_threadsafe(self._enqueue, entry)
        except RuntimeError:  # the loop is closed: the agent has stopped
            self._count("failed", tag.split("/", 2)[2])
            log.warning("vehicle_event.lost", tag=tag, reason="agent stopped")
            return False
        return True

    def _enqueue(self, entry: _Entry) -> None:
        """On the agent's loop: one writer spools the queue in order."""
        self._queue.append(entry)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._queue:
                tag, payload, done = self._queue[0]
                spooled = await self._spool(tag, payload)
                self._queue.popleft()
                if done is not None and not done.done():
                    done.set_result(spooled)
        finally:  # cancelled at shutdown: whoever waits is told the event was not spooled
            while self._queue:
                tag, _, done = self._queue.popleft()
                self._count("failed", tag.split("/", 2)[2])
                if done is not None and not done.done():
                    done.set_result(False)

    async def _spool(self, tag: str, payload: dict[str, Any]) -> bool:
        name = tag.split("/", 2)[2]
        try:
            await self._fire(tag, payload)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a full disk or a closed spool must not break the caller
            self._count("failed", name)
            log.error("vehicle_event.spool_failed", tag=tag, error=f"{type(err).__name__}: {err}")
            return False
        self._count("emitted", name)
        log.info("vehicle_event.emitted", tag=tag)
        return True

    def _count(self, what: str, name: str) -> None:
        with self._lock:
            self._counts[what][name] += 1

    # -- reporting -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Counts by event name: emitted, rate_limited, disabled, failed; and the settings."""
        with self._lock:
            counts = {what: dict(counter) for what, counter in self._counts.items()}
            waiting = len(self._early) + len(self._queue)
        return {"enabled": self.settings.enabled, "disabled_names": list(self.settings.disabled),
                "rate_limit": {"default": self.settings.default_rate_limit,
                               **dict(self.settings.rate_limit)},
                "waiting": waiting, **counts}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
