"""A real master and real agents in this process (one asyncio loop), for fault tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import zmq.asyncio

from autopi_agent.config import load_agent_config
from autopi_agent.minion.daemon import Agent
from cloud_master.config import load_master_config
from cloud_master.server import Master
from tests.fleet import free_port


def master_opts(root: Path, **overrides: Any) -> dict[str, Any]:
    base = {"interface": "127.0.0.1", "publish_port": free_port(), "ret_port": free_port(),
            "root_dir": str(root), "sock_dir": str(root / "run"), "loop_interval": 1}
    base.update(overrides)
    return load_master_config(None, base)


def agent_opts(root: Path, master: Master, minion_id: str, **overrides: Any) -> dict[str, Any]:
    base = {"id": minion_id, "master": "127.0.0.1", "master_port": master.opts["ret_port"],
            "publish_port": master.opts["publish_port"], "root_dir": str(root),
            "acceptance_wait_time": 0.1, "random_reauth_delay": 0.05, "recon_default": 50,
            "recon_max": 500}
    base.update(overrides)
    return load_agent_config(None, base)


@contextlib.asynccontextmanager
async def running_master(root: Path, **overrides: Any) -> AsyncIterator[Master]:
    master = Master(master_opts(root, **overrides), ctx=zmq.asyncio.Context())
    master.bind()
    task = asyncio.create_task(master.serve())
    try:
        yield master
    finally:
        master.stop()
        await asyncio.wait_for(task, 10)
        master.ctx.term()


@contextlib.asynccontextmanager
async def running_agent(root: Path, master: Master, minion_id: str, *, accept: bool = True,
                        **overrides: Any) -> AsyncIterator[Agent]:
    """An agent whose key the master accepts (when ``accept``) as soon as it is pending."""
    ctx = zmq.asyncio.Context()
    agent = Agent(agent_opts(root, master, minion_id, **overrides), ctx=ctx,
                  grains={"id": minion_id, "os": "Debian"})
    task = asyncio.create_task(agent.run())
    try:
        if accept:
            await until(lambda: minion_id in master.keys.list().get("pending", []))
            master.keys.accept(minion_id)
            await asyncio.wait_for(agent.ready.wait(), 10)
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
        ctx.term()


async def until(check: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting for a condition")
