"""Returner ``master`` (alias ``spool``): the return goes to the master through the durable spool.

This is the path every job's return takes anyway (``Agent.send_return``, registered by the
daemon as ``ctx.services["send_return"]``); naming it in ``--return`` adds nothing, and a
scheduled job sends to the master when its ``return_job`` is true.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from autopi_agent.minion.context import AgentContext
from autopi_agent.returners import ReturnerError, check_settings
from autopi_proto.messages import JobReturn

__all__ = ["MasterReturner", "create"]

SendReturn = Callable[[JobReturn], Awaitable[Any]]


class MasterReturner:
    """Spools each return for the master (kept until the master acknowledges it)."""

    def __init__(self, send_return: SendReturn) -> None:
        self._send_return = send_return

    async def send(self, ret: JobReturn) -> None:
        await self._send_return(ret)

    async def aclose(self) -> None:
        return None


def create(ctx: AgentContext, settings: Mapping[str, Any]) -> MasterReturner:
    """The master returner of a running agent."""
    check_settings("master", settings, ())
    send_return = ctx.services.get("send_return")
    if not callable(send_return):
        raise ReturnerError("the master returner needs a running agent "
                            "(no send_return service is registered)")
    return MasterReturner(send_return)
