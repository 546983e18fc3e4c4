"""Execution module ``test``: check that an agent answers and how it receives arguments."""

from __future__ import annotations

from typing import Any

import structlog

from autopi_agent import __version__
from autopi_agent.minion.context import AgentContext, WithRetcode, current_job
from autopi_agent.minion.errors import CommandExecutionError

__all__ = ["arg", "echo", "exception", "kwarg", "ping", "retcode", "sleep", "version"]

log = structlog.get_logger(__name__)


def ping(ctx: AgentContext) -> bool:
    """Answer True: the agent is up and running jobs. Not an ICMP ping.

    CLI Example::

        cloud-master run car-0001 test.ping
    """
    log.debug("test.ping", minion=ctx.minion_id)
    return True


def echo(text: Any) -> Any:
    """Return ``text`` unchanged.

    CLI Example::

        cloud-master run car-0001 test.echo hi
    """
    return text


def version() -> str:
    """Return the agent's version, e.g. ``0.1.0`` (the Salt version it mimics is the
    ``saltversion`` grain).

    CLI Example::

        cloud-master run car-0001 test.version
    """
    return __version__


def sleep(length: float) -> bool:
    """Sleep ``length`` seconds, then return True. Used to test long-running jobs.

    The sleep ends early, failing the job, if the job reaches its time limit or the agent
    stops. A negative or non-numeric length is an error.

    CLI Example::

        cloud-master run car-0001 test.sleep 20
    """
    try:
        seconds = float(length)
    except (TypeError, ValueError) as err:
        raise CommandExecutionError(f"test.sleep: length must be a number of seconds, "
                                    f"not {length!r}") from err
    if seconds < 0:
        raise CommandExecutionError(f"test.sleep: length must be 0 or more, not {seconds:g}")
    current_job().sleep(seconds)
    return True


def arg(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return the positional and keyword arguments received, as
    ``{"args": [...], "kwargs": {...}}``: shows how the command line was parsed.

    CLI Example::

        cloud-master run car-0001 test.arg 1 two 3.1 txt=hello wow='{a: 1}'
    """
    return {"args": list(args), "kwargs": kwargs}


def kwarg(**kwargs: Any) -> dict[str, Any]:
    """Return the keyword arguments received.

    CLI Example::

        cloud-master run car-0001 test.kwarg num=1 txt=two
    """
    return kwargs


def exception(message: str = "Test Exception") -> None:
    """Raise an exception carrying ``message``: shows how a failing function is reported.

    CLI Example::

        cloud-master run car-0001 test.exception 'Oh noes!'
    """
    raise Exception(message)


def retcode(code: int = 42) -> WithRetcode:
    """Return True with the job retcode set to ``code`` (default 42).

    CLI Example::

        cloud-master run car-0001 test.retcode 3
    """
    try:
        value = int(code)
    except (TypeError, ValueError) as err:
        raise CommandExecutionError(f"test.retcode: code must be an integer, "
                                    f"not {code!r}") from err
    return WithRetcode(True, value)
