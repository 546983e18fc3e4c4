"""An execution module for dispatcher tests, loaded as ``jobs`` through the loader's table."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from autopi_agent.minion.context import AgentContext, current_job
from autopi_agent.minion.errors import CommandExecutionError

__all__ = ["async_echo", "async_sleep", "call_other", "command_error", "ctx_id", "exit_",
           "fail_dict", "gate", "record", "NOT_A_FUNCTION"]

NOT_A_FUNCTION = 42


async def async_echo(text: Any) -> Any:
    """Return ``text`` from a coroutine."""
    await asyncio.sleep(0)
    return text


async def async_sleep(seconds: float) -> bool:
    """Sleep on the event loop."""
    await asyncio.sleep(seconds)
    return True


def call_other(ctx: AgentContext, key: str) -> Any:
    """Call grains.get through the context."""
    return ctx.call("grains.get", key)


def command_error(retcode: int = 3) -> None:
    """Fail the way a hardware module does."""
    raise CommandExecutionError("adapter unplugged", retcode=retcode)


def ctx_id(ctx: AgentContext) -> str:
    """Return the injected context's minion id."""
    return ctx.minion_id


def exit_() -> None:
    """Call sys.exit from a module."""
    raise SystemExit(3)


def fail_dict() -> dict[str, Any]:
    """Return a Salt-style failed result."""
    return {"result": False, "comment": "nope"}


def gate(ctx: AgentContext, name: str) -> str:
    """Block until the test sets ``ctx.services[name]`` (a threading.Event), or cancelled."""
    event: threading.Event = ctx.services[name]
    while not event.wait(0.01):
        current_job().check()
    return f"{name} released"


def record(ctx: AgentContext, value: Any) -> Any:
    """Append ``value`` to ``ctx.services["calls"]``, to prove a function ran (or did not)."""
    ctx.services.setdefault("calls", []).append(value)
    return value
