"""One fleet process: many real agents in one asyncio loop sharing one ZeroMQ context.

Usage: python -m bench.fleet_worker SPEC.json   (SPEC written by bench.fanout)
Prints one JSON line when every agent is authenticated (or the start deadline passed),
then runs until SIGTERM, stops every agent and exits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from autopi_agent.config import load_agent_config
from autopi_agent.grains import core as grains_core
from autopi_agent.minion.daemon import Agent
from autopi_common.logging import setup_logging
from bench.keys import install_agent_keys
from bench.procfs import raise_nofile

# Each agent holds a DEALER, a SUB and a monitor pair for each (six sockets, with headroom).
SOCKETS_PER_AGENT = 8


def build_agents(spec: dict[str, Any], ctx: zmq.asyncio.Context) -> list[Agent]:
    """Agents for the ids of ``spec``, each in its own root dir with a pooled key pair."""
    ids: list[str] = spec["ids"]
    base = grains_core.collect(ids[0], extra={"fleet": "bench"})  # one machine, many cars
    agents = []
    for minion_id, key_dir in zip(ids, spec["key_dirs"], strict=True):
        root = Path(spec["root"]) / minion_id
        install_agent_keys(Path(key_dir), root / "pki" / "minion")
        opts = load_agent_config(None, {
            "id": minion_id, "master": "127.0.0.1", "master_port": spec["master_port"],
            "publish_port": spec["publish_port"], "root_dir": str(root),
            "log_level": spec["log_level"], "local_calls": False})
        agents.append(Agent(opts, ctx=ctx, grains=dict(base, id=minion_id)))
    return agents


async def run(spec: dict[str, Any]) -> None:
    ctx = zmq.asyncio.Context()
    ctx.set(zmq.MAX_SOCKETS, SOCKETS_PER_AGENT * len(spec["ids"]) + 256)
    built = time.perf_counter()
    agents = build_agents(spec, ctx)  # a SIGTERM until here ends the process at once
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    begin = time.perf_counter()
    tasks = [asyncio.create_task(agent.run()) for agent in agents]
    ready: asyncio.Future[Any] = asyncio.gather(*(agent.ready.wait() for agent in agents))
    waiting = asyncio.create_task(stopping.wait())
    await asyncio.wait({ready, waiting}, timeout=float(spec.get("start_timeout", 180)),
                       return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()  # a no-op once every agent is ready
    report = {"ready": sum(agent.ready.is_set() for agent in agents), "count": len(agents),
              "build_seconds": round(begin - built, 3),
              "auth_seconds": round(time.perf_counter() - begin, 3)}
    print(json.dumps(report), flush=True)
    await stopping.wait()
    for agent in agents:
        agent.stop()
    await asyncio.wait(tasks, timeout=30)
    ctx.destroy(linger=0)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    raise_nofile()
    setup_logging(spec["log_level"], "json")
    asyncio.run(run(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
