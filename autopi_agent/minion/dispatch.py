"""Runs one job: Salt wire arguments bound to a function's signature, with a time limit.

Sync functions run in a thread of their own (so one slow job never delays another), async
ones are awaited; every outcome becomes a JobResult with the text and retcode salt-minion
gives (``salt/minion.py`` ``_thread_return``). The dispatcher never raises, except that
cancelling the ``run`` call itself propagates CancelledError after cancelling the job.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from autopi_agent.minion.context import AgentContext, JobControl, WithRetcode, enter_job, leave_job
from autopi_agent.minion.errors import (
    EX_GENERIC,
    EX_OK,
    ArgumentError,
    CommandExecutionError,
    JobCancelled,
    UnknownFunctionError,
)
from autopi_agent.minion.loader import Function
from autopi_proto.args import KEY_VALUE, yaml_value

__all__ = ["Dispatcher", "JobResult", "bind", "parse_wire_args"]

log = structlog.get_logger(__name__)

# Seconds aclose() waits for job threads to notice the cancel flag.
_CLOSE_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a job returned: ``ret`` goes to the master with ``retcode`` and ``success``."""

    ret: Any
    retcode: int
    success: bool

    @classmethod
    def of(cls, ret: Any, retcode: int) -> JobResult:
        """A result whose ``success`` follows from ``retcode``."""
        return cls(ret=ret, retcode=retcode, success=retcode == EX_OK)


def parse_wire_args(arg: Sequence[Any] | None) -> tuple[list[Any], dict[str, Any]]:
    """Split Salt's wire ``arg`` list into positional and keyword arguments.

    ``{"__kwarg__": True, ...}`` dicts give keyword arguments, ``"key=value"`` strings give
    ``key`` with the value read as YAML (``n=3`` is 3, ``x={a: 1}`` a dict), anything else
    is positional and kept as sent.
    """
    if arg is None:
        return [], {}
    if isinstance(arg, (str, bytes)) or not isinstance(arg, Sequence):
        raise ArgumentError(f"the job's arguments must be a list, not {type(arg).__name__}")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for item in arg:
        if isinstance(item, Mapping) and "__kwarg__" in item:
            rest = {key: value for key, value in item.items() if key != "__kwarg__"}
            if item["__kwarg__"] is True:
                kwargs.update((str(key), value) for key, value in rest.items())
            else:
                args.append(rest)  # as salt-minion: the marker is dropped, the dict positional
            continue
        match = KEY_VALUE.fullmatch(item) if isinstance(item, str) else None
        if match:
            kwargs[match["key"]] = yaml_value(match["value"])
        else:
            args.append(item)
    return args, kwargs


def bind(function: Function, args: Sequence[Any],
         kwargs: Mapping[str, Any]) -> inspect.BoundArguments:
    """Bind wire arguments to ``function``'s signature or raise ArgumentError saying why."""
    params = function.signature.parameters.values()
    takes_any = any(param.kind is inspect.Parameter.VAR_KEYWORD for param in params)
    named = {param.name for param in params
             if param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               inspect.Parameter.KEYWORD_ONLY)}
    invalid = [f"{key}={value}" for key, value in kwargs.items()
               if not takes_any and key not in named]
    if invalid:
        raise ArgumentError(f"ERROR executing '{function.name}': The following keyword "
                            f"arguments are not valid: {', '.join(invalid)}"
                            f"\nUsage: {function.usage}")
    try:
        return function.signature.bind(*args, **kwargs)
    except TypeError as err:
        raise ArgumentError(f"Passed invalid arguments to {function.name}: {err}"
                            f"\nUsage: {function.usage}\n\n{function.doc}".rstrip()) from err


@dataclass(frozen=True, slots=True, eq=False)
class _RunningJob:
    fun: str
    control: JobControl
    started: float


class Dispatcher:
    """Runs jobs for one agent; jobs run concurrently and each has a time limit."""

    def __init__(self, ctx: AgentContext) -> None:
        self._ctx = ctx
        self._jobs: dict[_RunningJob, asyncio.Future[Any]] = {}
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def running(self) -> list[str]:
        """Names of the functions running now, oldest first."""
        return [job.fun for job in sorted(self._jobs, key=lambda job: job.started)]

    async def run(self, fun: str, arg: Sequence[Any] | None = None, *,
                  timeout: float | None = None, quiet: bool = False) -> JobResult:
        """Run ``fun`` with Salt wire arguments ``arg``; ``timeout`` seconds overrides the
        config's ``job_timeout``. Returns a JobResult for every outcome. ``quiet`` logs the
        start and end at debug level (loggers tick every second; the SD card and journald
        need not hear about each tick)."""
        started = time.monotonic()
        say = log.debug if quiet else log.info
        say("job.started", fun=fun)
        try:
            result = await self._run(fun, arg, timeout)
        except asyncio.CancelledError:
            log.info("job.abandoned", fun=fun)
            raise
        except Exception as err:  # a dispatcher bug must still produce a return
            log.error("job.dispatch_failed", fun=fun, error=f"{type(err).__name__}: {err}",
                      exc_info=True)
            result = JobResult.of(_exception_text(err), EX_GENERIC)
        say("job.finished", fun=fun, retcode=result.retcode,
            seconds=round(time.monotonic() - started, 3))
        return result

    async def aclose(self, grace: float = _CLOSE_GRACE) -> None:
        """Cancel every running job and wait up to ``grace`` seconds for job threads to end."""
        for job, waiter in list(self._jobs.items()):
            job.control.cancel("the agent is shutting down")
            waiter.cancel()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._lock:
                alive = [thread for thread in self._threads if thread.is_alive()]
            if not alive:
                return
            await asyncio.sleep(0.01)
        log.warning("dispatcher.threads_left", threads=[thread.name for thread in alive])

    async def _run(self, fun: str, arg: Sequence[Any] | None,
                   timeout: float | None) -> JobResult:
        try:
            function = self._ctx.loader.function(fun)
        except UnknownFunctionError as err:
            log.warning("job.unknown_function", fun=fun, reason=err.reason)
            return JobResult.of(self._missing_function_return(fun, err), EX_GENERIC)
        try:
            args, kwargs = parse_wire_args(arg)
            bound = bind(function, args, kwargs)
        except ArgumentError as err:
            log.warning("job.bad_arguments", fun=fun, error=str(err).splitlines()[0])
            return JobResult.of(str(err), EX_GENERIC)
        limit = timeout if timeout is not None else self._ctx.job_timeout
        return await self._execute(function, bound, limit)

    def _missing_function_return(self, fun: str, err: UnknownFunctionError) -> Any:
        # As salt-minion: docs of the functions the name prefixes, else the plain message.
        names = [] if err.reason else self._ctx.loader.list_functions(f"{fun}*")
        if not names:
            return str(err)
        docs: dict[str, Any] = {name: self._ctx.loader.function(name).doc for name in names}
        docs[fun] = str(err)
        return docs

    async def _execute(self, function: Function, bound: inspect.BoundArguments,
                       limit: float | None) -> JobResult:
        control = JobControl()
        job = _RunningJob(function.name, control, time.monotonic())
        call_args = ((self._ctx,) if function.wants_ctx else ()) + tuple(bound.args)
        token = enter_job(control)
        try:
            if function.is_async:
                waiter = asyncio.ensure_future(function.callable(*call_args, **bound.kwargs))
            else:
                waiter = self._start_thread(function, call_args, bound.kwargs)
        finally:
            leave_job(token)
        waiter.add_done_callback(_retrieve)
        self._jobs[job] = waiter
        try:
            done, _ = await asyncio.wait({waiter}, timeout=limit)
        except asyncio.CancelledError:
            control.cancel("the job was abandoned")
            waiter.cancel()
            raise
        finally:
            self._jobs.pop(job, None)
        if not done:
            return await self._timed_out(function, waiter, control, limit)
        return _outcome(function.name, waiter, control)

    async def _timed_out(self, function: Function, waiter: asyncio.Future[Any],
                         control: JobControl, limit: float | None) -> JobResult:
        text = f"ERROR: {function.name} exceeded the job time limit of {limit:g} s"
        control.cancel(f"{function.name} exceeded the job time limit of {limit:g} s")
        waiter.cancel()
        if function.is_async:
            await asyncio.wait({waiter}, timeout=1.0)  # let the coroutine unwind
        log.warning("job.timed_out", fun=function.name, limit=limit)
        return JobResult.of(text, EX_GENERIC)

    def _start_thread(self, function: Function, call_args: tuple[Any, ...],
                      kwargs: Mapping[str, Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()

        def deliver(ok: bool, value: Any) -> None:
            if future.done():
                return  # timed out or abandoned: nobody is waiting
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def work() -> None:
            try:
                ok, value = True, context.run(function.callable, *call_args, **kwargs)
            except Exception as err:
                ok, value = False, err
            except BaseException as err:  # SystemExit in a module must not kill the agent
                ok, value = False, RuntimeError(f"{type(err).__name__}: {err}")
            try:
                loop.call_soon_threadsafe(deliver, ok, value)
            except RuntimeError:  # the loop is gone: the result has no one to go to
                log.info("job.result_dropped", fun=function.name)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=work, name=f"job:{function.name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return future


def _retrieve(waiter: asyncio.Future[Any]) -> None:
    """Mark a late failure as seen: a job abandoned at its time limit may still fail."""
    if not waiter.cancelled():
        waiter.exception()


def _outcome(fun: str, waiter: asyncio.Future[Any], control: JobControl) -> JobResult:
    try:
        value = waiter.result()
    except CommandExecutionError as err:
        log.warning("job.command_error", fun=fun, error=str(err))
        return JobResult.of(f"ERROR: {err}", err.retcode)
    except JobCancelled as err:
        log.warning("job.cancelled", fun=fun, reason=str(err))
        return JobResult.of(f"ERROR: {fun} was cancelled: {err}", EX_GENERIC)
    except asyncio.CancelledError:
        reason = control.reason or "the job was cancelled"
        log.warning("job.cancelled", fun=fun, reason=reason)
        return JobResult.of(f"ERROR: {fun} was cancelled: {reason}", EX_GENERIC)
    except Exception as err:
        log.warning("job.exception", fun=fun, error=f"{type(err).__name__}: {err}")
        log.debug("job.traceback", fun=fun, exc_info=err)
        return JobResult.of(_exception_text(err), EX_GENERIC)
    return _classify(value)


def _classify(value: Any) -> JobResult:
    if isinstance(value, WithRetcode):
        return JobResult.of(value.ret, value.retcode)
    # Salt: a dict return whose "result" or "success" is false fails the job.
    if isinstance(value, Mapping) and not all(value.get(key, True)
                                              for key in ("result", "success")):
        return JobResult.of(value, EX_GENERIC)
    return JobResult.of(value, EX_OK)


def _exception_text(err: BaseException) -> str:
    return f"The minion function caused an exception: {type(err).__name__}: {err}"
