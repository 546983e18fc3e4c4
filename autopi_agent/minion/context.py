"""What an execution function may use: the agent context, the job's cancel flag, retcodes."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autopi_agent.minion.errors import CommandExecutionError, JobCancelled

if TYPE_CHECKING:
    from autopi_agent.minion.loader import Loader

__all__ = ["AgentContext", "JobControl", "WithRetcode", "current_job"]


@dataclass(slots=True)
class AgentContext:
    """One agent's state as execution functions see it (many agents may share a process).

    ``opts`` is the validated agent config; ``services`` holds the hardware owners the daemon
    registers (``"obd"``, ``"gpio"`` ...). Not frozen: grains are refreshed in place.
    """

    opts: Mapping[str, Any]
    minion_id: str
    grains: dict[str, Any]
    loader: Loader
    services: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, opts: Mapping[str, Any], *, grains: dict[str, Any] | None = None,
               loader: Loader | None = None) -> AgentContext:
        """A context for ``opts``: id from ``opts["id"]``, the builtin loader by default."""
        if loader is None:
            from autopi_agent.minion.loader import Loader

            loader = Loader()
        return cls(opts=opts, minion_id=str(opts["id"]), grains=dict(grains or {}),
                   loader=loader)

    @property
    def cmd_enabled(self) -> bool:
        """Whether shell access (cmd.*) is allowed by the config."""
        return bool(self.opts.get("cmd_enabled", False))

    @property
    def job_timeout(self) -> float | None:
        """Seconds a job may run (config ``job_timeout``, default 300); None means no limit."""
        value = self.opts.get("job_timeout", 300.0)
        return float(value) if value else None

    def call(self, fun: str, *args: Any, **kwargs: Any) -> Any:
        """Call another execution function synchronously, as ``ctx.call("grains.get", "os")``.

        Raises UnknownFunctionError for an unknown name and CommandExecutionError when the
        target is a coroutine function (use ``acall`` from async code).
        """
        function = self.loader.function(fun)
        if function.is_async:
            raise CommandExecutionError(f"{fun} is asynchronous; call it with ctx.acall")
        if function.wants_ctx:
            return function.callable(self, *args, **kwargs)
        return function.callable(*args, **kwargs)

    async def acall(self, fun: str, *args: Any, **kwargs: Any) -> Any:
        """Call another execution function from async code; sync ones run in a thread."""
        function = self.loader.function(fun)
        call_args = (self, *args) if function.wants_ctx else args
        if function.is_async:
            return await function.callable(*call_args, **kwargs)
        return await asyncio.to_thread(function.callable, *call_args, **kwargs)


@dataclass(frozen=True, slots=True)
class WithRetcode:
    """A return value with the job retcode to report, as ``return WithRetcode(out, 2)``."""

    ret: Any
    retcode: int


class JobControl:
    """The cancel flag of one running job; long sync functions poll it or sleep on it."""

    __slots__ = ("_cancelled", "reason")

    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        """True once the dispatcher asked the job to stop."""
        return self._cancelled.is_set()

    def cancel(self, reason: str) -> None:
        """Ask the job to stop (called by the dispatcher; safe from any thread)."""
        self.reason = reason
        self._cancelled.set()

    def check(self) -> None:
        """Raise JobCancelled if the job was asked to stop."""
        if self._cancelled.is_set():
            raise JobCancelled(self.reason or "the job was cancelled")

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, waking at once (with JobCancelled) if the job is cancelled."""
        if self._cancelled.wait(max(0.0, seconds)):
            raise JobCancelled(self.reason or "the job was cancelled")


_CURRENT_JOB: contextvars.ContextVar[JobControl] = contextvars.ContextVar("autopi_job")


def current_job() -> JobControl:
    """The running job's control; outside a job, a fresh one that is never cancelled."""
    try:
        return _CURRENT_JOB.get()
    except LookupError:
        return JobControl()


def enter_job(control: JobControl) -> contextvars.Token[JobControl]:
    """Make ``control`` the current job in this context (used by the dispatcher)."""
    return _CURRENT_JOB.set(control)


def leave_job(token: contextvars.Token[JobControl]) -> None:
    """Undo ``enter_job``."""
    _CURRENT_JOB.reset(token)
