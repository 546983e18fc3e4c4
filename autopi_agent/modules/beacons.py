"""Execution module ``beacons``: what the agent's vehicle events and beacons have done."""

from __future__ import annotations

from typing import Any

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.errors import CommandExecutionError

__all__ = ["status"]


def status(ctx: AgentContext) -> dict[str, Any]:
    """Vehicle events sent, rate-limited, disabled and failed, by name, and the OBD beacon.

    ``events`` holds the counts by event name (``emitted``, ``rate_limited``, ``disabled``,
    ``failed``), the settings in force and ``waiting`` (emitted, not yet in the spool).
    ``obd`` (with an adapter configured) holds the trouble-code reads: ``polls``,
    ``last_poll`` (Unix time), ``last_error``, ``known_codes`` and ``dtc_interval``.

    CLI Example::

        cloud-master run car-0001 beacons.status
    """
    events = ctx.services.get("vehicle_events")
    if events is None:
        raise CommandExecutionError("beacons.status needs the running agent "
                                    "(autopi-agent), not a local call")
    out: dict[str, Any] = {"events": events.status()}
    beacon = ctx.services.get("obd_beacon")
    if beacon is not None:
        out["obd"] = beacon.status()
    return out
