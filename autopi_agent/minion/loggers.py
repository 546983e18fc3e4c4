"""Telemetry loggers: execution functions read on an interval, their values spooled as samples.

Each logger (see ``logger_spec`` for its definition) is one asyncio task that, every
``interval`` seconds, makes one dispatcher call (``obd.query_many RPM SPEED ...`` by
default), turns the readings into samples ``{ts, series, value|text, unit}`` (``obd.RPM``),
drops those its change filter does not want, and hands the rest to the sink in one write
(the spool: one ``put_many`` and a nudge of the sender).

A logger pauses by itself:

- while the ``Gate`` says the engine is off or the adapter is gone (per its ``requires``);
  it looks again at each interval, without calling anything;
- after a read that failed as a whole (``adapter_gone``, ``unable_to_connect``,
  ``no_data`` for every PID, a time-out ...), retrying with a backoff that doubles from
  the interval up to ``max_backoff``; the first read that works resumes it. A read in
  which some PIDs answered is a success for those.

Values: numbers and booleans go as ``value``, strings as ``text``, lists and mappings as
JSON ``text``; ``None``, NaN and infinities are dropped. A reading's own ``timestamp`` is
the sample's ``ts`` when it has one. After a pause the filter starts afresh, so the first
values after it are kept.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from autopi_agent.minion.clock import Clock, SystemClock
from autopi_agent.minion.dispatch import Dispatcher, JobResult
from autopi_agent.minion.logger_spec import InvalidLogger, LoggerSpec, parse_loggers
from autopi_agent.spool import Spool

__all__ = ["Gate", "Logger", "LoggerSet", "SampleSink", "SpoolSink", "VehicleGate", "failure_kind"]

log = structlog.get_logger(__name__)

PILLAR_CHECK_S = 30.0
_ERROR_TEXT = re.compile(r"ERROR: (?P<kind>[a-z_]+): ")
# The OBD module's retcodes (autopi_agent/modules/obd.py), for a failure without its text.
_KINDS = {40: "invalid", 41: "unsupported", 42: "no_data", 43: "negative_response",
          44: "bus_error", 45: "bad_response", 46: "unable_to_connect", 47: "adapter_gone",
          48: "timeout"}
_MAX_TEXT = 4096
_MAX_UNIT = 32


class Gate(Protocol):
    """What the daemon knows about the car, fed from ignition and adapter monitoring."""

    @property
    def engine_running(self) -> bool | None:
        """True or False when known; None when nothing tells (loggers then just try)."""
        ...

    @property
    def adapter_present(self) -> bool:
        """False while no OBD adapter answers."""
        ...


class VehicleGate:
    """A Gate the daemon sets: ``gate.engine_running = False`` when the ignition goes off."""

    __slots__ = ("adapter_present", "engine_running")

    def __init__(self, engine_running: bool | None = None, adapter_present: bool = True) -> None:
        self.engine_running = engine_running
        self.adapter_present = adapter_present


class SampleSink(Protocol):
    """Where samples go."""

    async def write(self, samples: list[dict[str, Any]]) -> None:
        """Keep ``samples`` (one batch, one transaction)."""
        ...


class SpoolSink:
    """The agent's spool: one ``put_many`` per batch, then ``nudge`` (the sender's)."""

    def __init__(self, spool: Spool, nudge: Callable[[], None]) -> None:
        self.spool = spool
        self.nudge = nudge

    async def write(self, samples: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self.spool.put_many, "telemetry", samples)
        self.nudge()


def failure_kind(result: JobResult, value_key: str = "value") -> str | None:
    """Why a read gave nothing at all (an error kind such as ``adapter_gone``), or None."""
    ret = result.ret
    if isinstance(ret, Mapping):
        if value_key in ret:
            return None
        entries = [entry for entry in ret.values() if isinstance(entry, Mapping)]
        if any(value_key in entry for entry in entries):
            return None
        top = ret.get("error")
        if isinstance(top, Mapping):
            top = top.get("error")
        if isinstance(top, str):
            return top
        kinds = [entry["error"] for entry in entries if isinstance(entry.get("error"), str)]
        if kinds:
            return str(kinds[0])
    if result.success:
        return None
    match = _ERROR_TEXT.match(ret) if isinstance(ret, str) else None
    if match:
        return match["kind"]
    if isinstance(ret, str) and "exceeded the job time limit" in ret:
        return "timeout"
    return _KINDS.get(result.retcode, "error")


def _converted(value: Any) -> tuple[str, Any] | None:
    if isinstance(value, bool):
        return "value", float(value)
    if isinstance(value, (int, float)):
        return ("value", float(value)) if math.isfinite(value) else None
    if value is None:
        return None
    if isinstance(value, str):
        return "text", value[:_MAX_TEXT]
    return "text", json.dumps(value, default=str, separators=(",", ":"))[:_MAX_TEXT]


class _Series:
    """What the change filter remembers of one series: the last value kept, and when."""

    __slots__ = ("sent", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.sent: float | None = None


class Logger:
    """One running logger; ``state`` is ``running``, ``gated``, ``failing`` or ``stopped``."""

    def __init__(self, spec: LoggerSpec, dispatcher: Dispatcher, sink: SampleSink, *,
                 gate: Gate | None = None, clock: Clock | None = None) -> None:
        self.spec = spec
        self.dispatcher = dispatcher
        self.sink = sink
        self.gate = gate
        self.clock = clock or SystemClock()
        self.state = "stopped"
        self.reads = 0
        self.samples = 0
        self.failures = 0
        self.last_error: str | None = None
        self._series: dict[str, _Series] = {}
        self._names: dict[str, str] = {}

    def status(self) -> dict[str, Any]:
        """What the logger is doing, for people."""
        return {"state": self.state, "function": self.spec.function, "interval": self.spec.interval,
                "reads": self.reads, "samples": self.samples, "failures": self.failures,
                "last_error": self.last_error}

    async def run(self) -> None:
        """Read, keep, sleep, until cancelled; reads never overlap and are not caught up."""
        due = self.clock.monotonic()
        try:
            while True:
                pause = await self.tick()
                now = self.clock.monotonic()
                due = now + pause if pause is not None else due + self.spec.interval
                if due <= now:
                    due = now + self.spec.interval
                await self.clock.sleep(due - now)
        finally:
            self.state = "stopped"

    async def tick(self) -> float | None:
        """One read; the seconds to wait before the next when it failed, else None."""
        reason = self._gated()
        if reason is not None:
            self._enter("gated", reason=reason)
            return None
        result = await self.dispatcher.run(self.spec.function, self.spec.arg,
                                            timeout=self.spec.timeout, quiet=True)
        self.reads += 1
        kind = failure_kind(result, self.spec.value_key)
        if kind is not None:
            return self._failed(kind, result)
        if self.state != "running":
            self._series.clear()  # start afresh: the first values after a pause are kept
            self._enter("running", reads=self.reads)
            self.failures = 0
        samples = self.collect(result.ret)
        if samples:
            await self._write(samples)
        return None

    def collect(self, ret: Any) -> list[dict[str, Any]]:
        """The samples the change filter keeps from one read's return."""
        wall, mono = self.clock.time(), self.clock.monotonic()
        out: list[dict[str, Any]] = []
        key = self.spec.value_key
        if not isinstance(ret, Mapping):
            self._offer(out, self.spec.series, ret, None, None, wall, mono)
        elif key in ret:
            self._offer(out, self.spec.series, ret[key], ret.get("unit"), ret.get("timestamp"),
                        wall, mono)
        else:
            for name, entry in ret.items():
                if isinstance(entry, Mapping) and key in entry:
                    self._offer(out, self._series_name(name), entry[key], entry.get("unit"),
                                entry.get("timestamp"), wall, mono)
        return out

    def _series_name(self, name: Any) -> str:
        series = self._names.get(name)
        if series is None:
            series = self._names[name] = f"{self.spec.series}.{name}"
        return series

    def _offer(self, out: list[dict[str, Any]], series: str, value: Any, unit: Any, stamp: Any,
               wall: float, mono: float) -> None:
        converted = _converted(value)
        if converted is None:
            return
        field, plain = converted
        state = self._series.get(series)
        if state is None:
            state = self._series[series] = _Series()
        if not self._wanted(state, plain, mono):
            return
        state.value, state.sent = plain, mono
        ts = stamp if isinstance(stamp, (int, float)) and math.isfinite(stamp) else wall
        sample = {"ts": ts, "series": series, field: plain}
        if isinstance(unit, str) and unit:
            sample["unit"] = unit[:_MAX_UNIT]
        out.append(sample)

    def _wanted(self, state: _Series, value: Any, mono: float) -> bool:
        spec = self.spec
        if not spec.filtered or state.sent is None:
            return True
        if spec.max_interval is not None and mono - state.sent >= spec.max_interval:
            return True
        last = state.value
        if isinstance(value, float) and isinstance(last, float):
            limit = spec.threshold or 0.0
            if spec.percent:
                limit = abs(last) * limit / 100.0
            return abs(value - last) > limit
        return bool(value != last)

    def _gated(self) -> str | None:
        if self.gate is None or self.spec.requires == "none":
            return None
        if not self.gate.adapter_present:
            return "adapter_gone"
        if self.spec.requires == "engine" and self.gate.engine_running is False:
            return "engine_off"
        return None

    def _failed(self, kind: str, result: JobResult) -> float:
        self.failures += 1
        self.last_error = f"{kind}: {str(result.ret)[:200]}"
        delay = min(self.spec.max_backoff, self.spec.interval * 2.0 ** min(self.failures - 1, 20))
        self._enter("failing", error=kind, retry_in=delay)
        return delay

    def _enter(self, state: str, **details: Any) -> None:
        if state == self.state:
            return
        if state == "failing":
            log.warning("logger.failing", logger=self.spec.name, **details)
        else:
            event = {"running": "logger.resumed", "gated": "logger.paused"}[state]
            if self.state == "stopped":
                event = "logger.started" if state == "running" else event
            log.info(event, logger=self.spec.name, was=self.state, **details)
        self.state = state

    async def _write(self, samples: list[dict[str, Any]]) -> None:
        try:
            await self.sink.write(samples)
        except Exception as err:  # a full or broken spool must not stop the logger
            log.error("logger.write_failed", logger=self.spec.name, samples=len(samples),
                      error=f"{type(err).__name__}: {err}")
            return
        self.samples += len(samples)


class LoggerSet:
    """One agent's loggers; the daemon owns it. Three sources, by name: the agent config's
    ``loggers`` win over those states declared (``obd.logger``, read through ``managed``),
    which win over the pillar's ``loggers``: the config is what the person at the car set,
    a state is an explicit per-car declaration, the pillar is fleet-wide data."""

    def __init__(self, dispatcher: Dispatcher, sink: SampleSink,
                 config: Mapping[str, Any] | None = None, *, gate: Gate | None = None,
                 clock: Clock | None = None,
                 pillar: Callable[[], Mapping[str, Any] | None] | None = None,
                 managed: Callable[[], Mapping[str, Any] | None] | None = None) -> None:
        self.dispatcher = dispatcher
        self.sink = sink
        self.gate = gate
        self.clock = clock or SystemClock()
        self._config, errors = parse_loggers(config)
        if errors:
            raise InvalidLogger("; ".join(errors))
        self._pillar = pillar
        self._pillar_seen: Mapping[str, Any] | None = None
        self._pillar_specs: dict[str, LoggerSpec] = {}
        self._managed = managed
        self._managed_seen: Mapping[str, Any] | None = None
        self._managed_specs: dict[str, LoggerSpec] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.errors: list[str] = []
        self.loggers: dict[str, Logger] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None

    def specs(self) -> dict[str, LoggerSpec]:
        """The loggers in force, by name (config over states over pillar)."""
        return {**self._pillar_specs, **self._managed_specs, **self._config}

    def start(self) -> None:
        """Start every enabled logger, and the pillar watch."""
        if self._watch is None:
            self._loop = asyncio.get_running_loop()
            self._read_pillar()
            self._read_managed()
            self._apply()
            self._watch = asyncio.create_task(self._watch_pillar(), name="loggers:pillar")

    async def stop(self) -> None:
        """Stop every logger (a read in progress is abandoned)."""
        tasks = [*self._tasks.values(), *self._retired, *([self._watch] if self._watch else [])]
        self._tasks, self._retired, self._watch = {}, set(), None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def notify(self) -> None:
        """The pillar or the states' loggers may have changed: apply them."""
        if self._watch is not None and (self._read_pillar() | self._read_managed()):
            self._apply()

    def reload(self) -> None:
        """``notify`` from any thread (a state run's worker thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.notify)

    def _read_managed(self) -> bool:
        managed = self._managed() if self._managed else None
        if managed is self._managed_seen:
            return False
        self._managed_seen = managed
        self._managed_specs, errors = parse_loggers(managed, "state loggers")
        for error in errors:
            log.error("logger.invalid", error=error)
        return True

    def status(self) -> dict[str, dict[str, Any]]:
        """Each logger's state and counters."""
        return {name: logger.status() for name, logger in sorted(self.loggers.items())}

    def _read_pillar(self) -> bool:
        pillar = self._pillar() if self._pillar else None
        if pillar is self._pillar_seen:
            return False
        self._pillar_seen = pillar
        self._pillar_specs, self.errors = parse_loggers((pillar or {}).get("loggers"),
                                                        "pillar loggers")
        for error in self.errors:
            log.error("logger.invalid", error=error)
        return True

    def _apply(self) -> None:
        wanted = {name: spec for name, spec in self.specs().items() if spec.enabled}
        for name in list(self._tasks):
            if name not in wanted or wanted[name] != self.loggers[name].spec:
                task = self._tasks.pop(name)
                task.cancel()
                self._retired.add(task)
                task.add_done_callback(self._retired.discard)
                del self.loggers[name]
        for name, spec in wanted.items():
            if name not in self._tasks:
                logger = Logger(spec, self.dispatcher, self.sink, gate=self.gate, clock=self.clock)
                self.loggers[name] = logger
                self._tasks[name] = asyncio.create_task(logger.run(), name=f"logger:{name}")

    async def _watch_pillar(self) -> None:
        while True:
            await self.clock.sleep(PILLAR_CHECK_S)
            self.notify()
