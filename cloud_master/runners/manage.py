"""Which accepted minions are up: ``test.ping`` to each of them, and see who answers."""

from __future__ import annotations

import asyncio
import time

from cloud_master.pki import KeyState
from cloud_master.runners import RunnerContext

__all__ = ["down", "status", "up"]


async def _ping(ctx: RunnerContext, timeout: float | None) -> tuple[list[str], list[str]]:
    accepted = sorted(ctx.keys.list().get(KeyState.ACCEPTED, []))
    if not accepted:
        return [], []
    wait = float(ctx.opts.get("timeout", 5) if timeout is None else timeout)
    pub, expected = ctx.register_job("test.ping", [], accepted, "list", user="runner")
    queue = ctx.tracker.wait(pub.jid)  # before sending: a fast answer must not be missed
    try:
        await ctx.send_job(pub, expected)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                if await asyncio.wait_for(queue.get(), left) is None:
                    break
            except TimeoutError:
                break
    finally:
        ctx.tracker.unwait(pub.jid, queue)
    job = ctx.tracker.get(pub.jid)
    answered = job.returned if job is not None else set()
    return sorted(answered & set(accepted)), sorted(set(accepted) - answered)


async def status(ctx: RunnerContext, timeout: float | None = None) -> dict[str, list[str]]:
    """Accepted minions that answer ``test.ping`` within ``timeout`` seconds (default: the
    master's ``timeout``) and those that do not.

    CLI: ``cloud-master runner manage.status timeout=2``
    """
    up_ids, down_ids = await _ping(ctx, timeout)
    return {"up": up_ids, "down": down_ids}


async def up(ctx: RunnerContext, timeout: float | None = None) -> list[str]:
    """Accepted minions that answer ``test.ping``. CLI: ``cloud-master runner manage.up``"""
    return (await _ping(ctx, timeout))[0]


async def down(ctx: RunnerContext, timeout: float | None = None) -> list[str]:
    """Accepted minions that do not answer ``test.ping``. CLI: ``cloud-master runner manage.down``"""
    return (await _ping(ctx, timeout))[1]
