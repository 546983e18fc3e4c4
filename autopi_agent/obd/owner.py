"""The one owner of an OBD adapter: a thread with a queue that jobs and loggers submit work to.

Every request carries a deadline: the caller waits at most that long and gets ObdTimeout,
whatever the adapter does. The owner connects lazily on first use (or at once with
``start(connect=True)``). After losing the adapter it retries on its own with a doubling
wait (``reconnect_min`` .. ``reconnect_max``); the car (ignition off) is retried on the
same schedule but only when a request needs it. A request during a wait fails at once
with the last error, unless the adapter's device has just reappeared.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import structlog

from autopi_agent.obd.car import read_vin
from autopi_agent.obd.errors import (
    ObdAdapterBusy,
    ObdAdapterGone,
    ObdError,
    ObdTimeout,
    restated,
)
from autopi_agent.obd.session import Deadline, Session
from autopi_agent.obd.settings import ObdSettings
from autopi_agent.portlock import PortBusy, PortLock

__all__ = ["ObdOwner", "OwnerState"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
Work = Callable[[Session, Deadline], T]
_WAIT_SLICE = 0.25  # how often a waiting caller checks whether its job was cancelled


class OwnerState:
    """Connection states, as ``obd.status`` reports them."""

    IDLE = "idle"  # not connected yet; connects on first use
    ADAPTER = "adapter_connected"  # the adapter answers, the car does not (ignition off?)
    CAR = "car_connected"
    LOST = "disconnected"  # lost or failed; retrying with backoff
    CLOSED = "closed"


@dataclass(eq=False, slots=True)
class _Job:
    work: Callable[[Session, Deadline], Any]
    deadline: float
    needs_car: bool
    what: str
    future: Future[Any]


class _Backoff:
    def __init__(self, first: float, most: float) -> None:
        self.first, self.most = first, most
        self.delay = first
        self.next_at = 0.0

    def failed(self, now: float) -> None:
        self.next_at = now + self.delay
        self.delay = min(self.delay * 2, self.most)

    def succeeded(self) -> None:
        self.delay, self.next_at = self.first, 0.0


class ObdOwner:
    """Serialises all access to one adapter (see the module docstring). Thread-safe."""

    def __init__(self, settings: ObdSettings,
                 on_connect: Callable[[dict[str, Any]], None] | None = None,
                 on_disconnect: Callable[[str], None] | None = None,
                 lock_dir: str | Path | None = None) -> None:
        self.settings = settings
        # Held while a session has the port open (see autopi_agent/portlock.py).
        self._lock = PortLock(settings.port, lock_dir) if lock_dir is not None else None
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect  # called with the reason when the car is lost
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._session: Session | None = None
        self._state = OwnerState.IDLE
        self._last_error: ObdError | None = None
        self._adapter_backoff = _Backoff(settings.reconnect_min, settings.reconnect_max)
        self._car_backoff = _Backoff(settings.reconnect_min, settings.reconnect_max)
        self._retrying = False
        self._closing = threading.Event()
        self._grains: dict[str, Any] = {}

    # ------------------------------------------------------------ lifecycle

    def start(self, *, connect: bool = False) -> ObdOwner:
        """Start the owner thread; ``connect`` tries the adapter at once instead of lazily."""
        if self._thread is not None:
            return self
        self._retrying = connect
        self._thread = threading.Thread(target=self._run, name=f"obd-owner:{self.settings.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Fail queued work, close the port, stop the thread (waits up to ``timeout``)."""
        self._closing.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("obd.owner_still_busy", port=self.settings.port)
            self._thread = None
        self._state = OwnerState.CLOSED

    def __enter__(self) -> ObdOwner:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------ for callers (any thread)

    def call(self, work: Work[T], *, timeout: float | None = None, needs_car: bool = True,
             what: str = "OBD request", cancelled: Callable[[], bool] | None = None) -> T:
        """Run ``work(session, deadline)`` on the owner thread and return its result.

        Waits at most ``timeout`` seconds (default: the ``timeout`` setting, plus
        ``connect_timeout`` while not connected), then raises ObdTimeout. ``cancelled``
        (polled) abandons the wait early, also with ObdTimeout.
        """
        if self._closing.is_set() or self._thread is None:
            raise ObdAdapterGone(f"{what}: the OBD connection owner is not running")
        wait = timeout if timeout is not None else self._default_wait()
        job = _Job(work, time.monotonic() + wait, needs_car, what, Future())
        self._queue.put(job)
        while True:
            left = job.deadline - time.monotonic()
            done, _ = wait_for([job.future], timeout=max(0.0, min(left, _WAIT_SLICE)))
            if done:
                result: T = job.future.result()  # the work's own ObdTimeout passes through
                return result
            if left <= _WAIT_SLICE or (cancelled is not None and cancelled()):
                job.future.cancel()
                raise ObdTimeout(f"{what}: no answer within {wait:g} s "
                                 f"(OBD adapter at {self.settings.port})")

    def _default_wait(self) -> float:
        if self._state == OwnerState.CAR:
            return self.settings.timeout
        return self.settings.timeout + self.settings.connect_timeout

    @property
    def state(self) -> str:
        """One of the OwnerState values."""
        return self._state

    def info(self) -> dict[str, Any]:
        """What is known about the connection now, without touching the adapter."""
        session, error = self._session, self._last_error
        out: dict[str, Any] = {"state": self._state, "port": self.settings.port,
                               "configured_protocol": self.settings.protocol}
        if session is not None:
            out.update(baudrate=session.baudrate or None, adapter=session.adapter_version,
                       connected_since=session.connected_at)
            if session.car_connected:
                out.update(protocol=session.protocol_id, protocol_name=session.protocol_name,
                           protocol_fallback=session.fell_back,
                           supported_pids=session.supported_count)
        if error is not None and self._state != OwnerState.CAR:
            out["last_error"] = error.to_dict()
            retry = max(self._adapter_backoff.next_at, self._car_backoff.next_at)
            if retry > time.monotonic():
                out["retry_in"] = round(retry - time.monotonic(), 1)
        return out

    def grains(self) -> dict[str, Any]:
        """Grains from the car (``{"obd": {...}}``) as of the last connection; {} if none."""
        return dict(self._grains)

    # ------------------------------------------------------------ the owner thread

    def _run(self) -> None:
        while True:
            job = self._next_job()
            if self._closing.is_set():
                if job is not None and job.future.set_running_or_notify_cancel():
                    job.future.set_exception(
                        ObdAdapterGone(f"{job.what}: the OBD connection is closing"))
                if job is None or self._queue.empty():
                    break
            elif job is None:
                self._retry_in_background()
            elif job.future.set_running_or_notify_cancel():
                self._serve(job)
        self._drop_session()

    def _next_job(self) -> _Job | None:
        timeout = None
        if self._retrying and self._session is None:
            timeout = max(0.0, self._adapter_backoff.next_at - time.monotonic())
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _serve(self, job: _Job) -> None:
        deadline = Deadline(job.deadline, self.settings.timeout)
        try:
            session = self._ready(job, deadline)
        except ObdError as err:
            job.future.set_exception(err)
            return
        try:
            result = job.work(session, deadline)
        except ObdError as err:
            if isinstance(err, ObdAdapterGone):
                self._lose(err)
            elif isinstance(err, ObdTimeout):
                session.needs_sync = True  # a late reply may still come: resync before reuse
            job.future.set_exception(err)
        except Exception as err:  # a bug in one piece of work must not kill the owner
            log.error("obd.work_failed", what=job.what, error=repr(err), exc_info=True)
            job.future.set_exception(err)
        else:
            job.future.set_result(result)
        finally:
            self._follow(session)

    def _follow(self, session: Session) -> None:
        """Keep the state in step with what a piece of work did to the car connection
        (obd.protocol switches protocols, and may lose the car doing it)."""
        if session is not self._session:
            return
        if self._state == OwnerState.CAR and not session.car_connected:
            self._enter(OwnerState.ADAPTER)
        elif self._state == OwnerState.ADAPTER and session.car_connected:
            self._state = OwnerState.CAR
            self._car_backoff.succeeded()
            self._last_error = None

    def _ready(self, job: _Job, deadline: Deadline) -> Session:
        """The session ``job`` needs: connected (and resynced), with the car if asked."""
        if self._session is not None and self._session.needs_sync:
            self._resync(self._session, deadline)
        if self._session is None:
            self._may_try(self._adapter_backoff, job.what)
            self._connect(deadline)
        session = self._session
        assert session is not None
        if job.needs_car and not session.car_connected:
            self._may_try(self._car_backoff, job.what)
            self._reach_car(session, deadline)
        return session

    def _resync(self, session: Session, deadline: Deadline) -> None:
        try:
            session.link.sync(deadline.left("waiting for the OBD adapter's prompt"))
        except ObdError as err:
            self._lose(err)
            raise
        session.needs_sync = False

    def _may_try(self, backoff: _Backoff, what: str) -> None:
        """Raise the last error again while ``backoff`` says to wait."""
        wait = backoff.next_at - time.monotonic()
        if wait <= 0 or self._last_error is None or self._device_reappeared():
            return
        raise restated(self._last_error, f"{what}: {self._last_error} "
                                         f"(next attempt in {wait:.1f} s)")

    def _device_reappeared(self) -> bool:
        return (isinstance(self._last_error, ObdAdapterGone) and not self.settings.is_url
                and os.path.exists(self.settings.port))

    def _connect(self, deadline: Deadline) -> None:
        self._retrying = True  # from now on a loss is retried without waiting for a request
        try:
            self._take_port()
            session = Session.open(self.settings, deadline.left("connecting to the OBD adapter"))
        except ObdError as err:
            if self._lock is not None:
                self._lock.release()
            self._fail(self._adapter_backoff, err, OwnerState.LOST)
            raise
        self._session = session
        self._adapter_backoff.succeeded()
        self._state = OwnerState.ADAPTER
        log.info("obd.adapter_connected", port=self.settings.port, adapter=session.adapter_version)
        try:
            self._reach_car(session, deadline)
        except (ObdAdapterGone, ObdTimeout) as err:
            self._lose(err)
            raise
        except ObdError as err:
            log.info("obd.car_unreachable", error=str(err))

    def _reach_car(self, session: Session, deadline: Deadline) -> None:
        bound = min(self.settings.connect_timeout, deadline.at - time.monotonic())
        try:
            if bound <= 0:
                raise ObdTimeout("connecting to the car: out of time")
            session.reach_car(bound)
        except ObdError as err:
            self._fail(self._car_backoff, err, OwnerState.ADAPTER)
            raise
        self._car_backoff.succeeded()
        self._last_error = None
        self._state = OwnerState.CAR
        self._grains = self._read_grains(session, deadline)
        if self._on_connect is not None:
            try:
                self._on_connect(dict(self._grains))
            except Exception as err:  # the daemon's hook must not break the connection
                log.error("obd.on_connect_failed", error=repr(err))

    def _read_grains(self, session: Session, deadline: Deadline) -> dict[str, Any]:
        grains: dict[str, Any] = {"protocol": session.protocol_id,
                                  "protocol_name": session.protocol_name,
                                  "supported_pids": session.supported_count}
        try:
            grains["vin"] = read_vin(session, deadline)["vin"]
        except ObdError as err:
            log.info("obd.vin_unavailable", error=str(err))
        return {"obd": grains}

    def _fail(self, backoff: _Backoff, err: ObdError, state: str) -> None:
        backoff.failed(time.monotonic())
        self._last_error = err
        self._enter(state)
        log.warning("obd.attempt_failed", port=self.settings.port, error=err.kind,
                    message=str(err), retry_in=round(backoff.next_at - time.monotonic(), 1))

    def _enter(self, state: str) -> None:
        """Move to ``state``; leaving CAR tells the on_disconnect hook (not on close())."""
        left_car = self._state == OwnerState.CAR and state != OwnerState.CAR
        self._state = state
        if left_car and self._on_disconnect is not None:
            reason = str(self._last_error) if self._last_error is not None else state
            try:
                self._on_disconnect(reason)
            except Exception as err:  # the daemon's hook must not break the owner thread
                log.error("obd.on_disconnect_failed", error=repr(err))

    def _lose(self, err: ObdError) -> None:
        log.warning("obd.adapter_lost", port=self.settings.port, error=err.kind, message=str(err))
        self._drop_session()
        self._car_backoff.succeeded()
        self._fail(self._adapter_backoff, err, OwnerState.LOST)

    def _drop_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._lock is not None:
            self._lock.release()
        self._grains = {}

    def _take_port(self) -> None:
        if self._lock is None:
            return
        try:
            self._lock.acquire()
        except PortBusy as err:
            raise ObdAdapterBusy(err.advice("the OBD adapter")) from None

    def _retry_in_background(self) -> None:
        """Look for a lost adapter. The car is only looked for when a request needs it:
        polling a parked car's bus would keep its ECUs awake and drain its battery."""
        if self._session is not None or time.monotonic() < self._adapter_backoff.next_at:
            return
        deadline = Deadline(time.monotonic() + self.settings.connect_timeout, self.settings.timeout)
        try:
            self._connect(deadline)
        except ObdError:
            pass  # recorded by _fail; the next attempt waits for its backoff
