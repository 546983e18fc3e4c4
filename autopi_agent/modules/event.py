"""Execution module ``event``: send events to the master's event bus."""

from __future__ import annotations

from typing import Any

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.errors import CommandExecutionError

__all__ = ["fire_master", "send"]


def send(ctx: AgentContext, tag: str, data: dict[str, Any] | None = None) -> bool:
    """Fire an event with ``tag`` and ``data`` on the master's event bus.

    The event carries this agent's id. Fails when the agent is not connected to a master
    (a local call).

    CLI Example::

        cloud-master run car-0001 event.send 'vehicle/car-0001/test' '{"answer": 42}'
    """
    master_call = ctx.services.get("master_call")
    if master_call is None:
        raise CommandExecutionError("event.send needs a master: this is a local call")
    payload = dict(data or {})
    payload.setdefault("id", ctx.minion_id)
    reply = master_call({"cmd": "_minion_event", "id": ctx.minion_id, "tag": tag,
                         "data": payload, "pretag": None})
    return reply is not False


def fire_master(ctx: AgentContext, data: dict[str, Any] | None, tag: str) -> bool:
    """Salt's older spelling of :func:`send`, with the arguments the other way round.

    CLI Example::

        cloud-master run car-0001 event.fire_master '{"a": 1}' my/tag
    """
    return send(ctx, tag, data)
