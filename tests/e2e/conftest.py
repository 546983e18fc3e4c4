"""Fixtures that start a real cloud-master and real agents, and always stop them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Daemon, MasterDaemon, make_agent, make_master, wait_for


@pytest.fixture
def master(tmp_path: Path) -> Iterator[MasterDaemon]:
    daemon = make_master(tmp_path / "master")
    daemon.start()
    try:
        wait_for(daemon.control_ready, what="master control socket")
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def agent_factory(tmp_path: Path, master: MasterDaemon) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(minion_id: str, accept: bool = True, **overrides: Any) -> Daemon:
        agent = make_agent(tmp_path / minion_id, master, minion_id, **overrides)
        agent.start()
        started.append(agent)
        if accept:
            wait_for(lambda: minion_id in master.keys().get("pending", []) or
                     minion_id in master.keys().get("accepted", []),
                     what=f"{minion_id}'s key to reach the master\n{agent.log_tail()}")
            master.cli("key", "accept", minion_id, "-y", check=True)
        return agent

    try:
        yield start
    finally:
        for agent in started:
            agent.stop()
