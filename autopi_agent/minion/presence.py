"""The agent's presence on the master: the start announcement, and re-authentication when
the publisher link comes back (the master may have restarted and lost its session keys)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import TYPE_CHECKING

import structlog

from autopi_agent.state.sources import refresh_pillar
from autopi_agent.transport import TransportError
from autopi_proto.errors import AuthenticationError, DecodeError

if TYPE_CHECKING:
    from autopi_agent.minion.daemon import Agent

log = structlog.get_logger(__name__)

# How often an agent that authenticated but cannot reach the publisher says so.
PUBLISHER_WARN_S = 10.0


async def announce(agent: Agent) -> None:
    """Tell the master we started and what our grains are (for grain targeting)."""
    started = f"Minion {agent.minion_id} started at {time.asctime()}"
    # The _pillar request also tells the master our grains (for grain targeting).
    with contextlib.suppress(Exception):
        await asyncio.to_thread(refresh_pillar, agent.context)
        agent.scheduler.notify()
        agent.loggers.notify()
    for tag in ("minion_start", f"salt/minion/{agent.minion_id}/start"):
        with contextlib.suppress(TransportError, AuthenticationError, DecodeError):
            await agent.link.request({"cmd": "_minion_event", "id": agent.minion_id,
                                      "tag": tag, "data": started, "pretag": None}, timeout=30)


async def subscribed(agent: Agent, warn_every: float = PUBLISHER_WARN_S) -> None:
    """Return once the handshake with the master's publisher is done (``watch_link`` reads
    the link's events); log a warning every ``warn_every`` seconds until then."""
    sub = agent.sub
    assert sub is not None
    waited = 0.0
    while True:
        try:
            await asyncio.wait_for(sub.up.wait(), warn_every)
            return
        except TimeoutError:
            waited += warn_every
            log.warning("agent.publisher_unreachable", publisher=sub.address, waited_s=waited,
                        hint="jobs cannot reach this agent until it connects")


async def watch_link(agent: Agent) -> None:
    """Re-authenticate when the publisher link comes back after a disconnection."""
    sub = agent.sub
    assert sub is not None
    seen_disconnect = False
    async for change in sub.link_events():
        log.info("link.changed", state=change, master=sub.address)
        if change == "disconnected":
            seen_disconnect = True
        elif seen_disconnect:
            seen_disconnect = False
            delay = random.uniform(0, float(agent.opts.get("random_reauth_delay", 10)))
            await asyncio.sleep(delay)
            agent.link.reset()
            await agent.reauthenticate("publisher reconnected")
