"""agent.config end to end: a real agent process changes its own config from a state sent by a
real master, restarts itself, and comes back on the old config when the new one cannot reach
the master ("a state that changes the agent's own config never leaves it unable to reconnect")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fleet import Daemon, MasterDaemon, free_port, make_agent, make_master, wait_for

pytestmark = pytest.mark.slow

SLS = {
    "unreachable.sls": """
point the agent elsewhere:
  agent.config:
    - settings:
        master_port: {{ pillar['dead_port'] }}
        publish_port: {{ pillar['dead_port'] }}
""",
    "fleet.sls": """
new fleet:
  agent.config:
    - settings:
        grains: {fleet: taxis}
""",
}


@pytest.fixture
def car(tmp_path: Path) -> Iterator[tuple[MasterDaemon, Daemon, Path]]:
    srv, pillar = tmp_path / "srv", tmp_path / "pillar"
    for name, text in SLS.items():
        (srv / name).parent.mkdir(parents=True, exist_ok=True)
        (srv / name).write_text(text)
    pillar.mkdir()
    (pillar / "top.sls").write_text("base:\n  '*':\n    - ports\n")
    (pillar / "ports.sls").write_text(f"dead_port: {free_port()}\n")
    master = make_master(tmp_path / "m", file_roots={"base": [str(srv)]},
                         pillar_roots={"base": [str(pillar)]}, auto_accept=True)
    master.start()
    agent = make_agent(tmp_path / "car", master, "car-0001", config_trial_window=4,
                       auth_timeout=2, shutdown_flush_timeout=10)
    try:
        wait_for(master.control_ready, what="master")
        agent.start()
        ping(master, agent)
        yield master, agent, tmp_path / "car" / "agent.d"
    finally:
        agent.stop()
        master.stop()


def ping(master: MasterDaemon, agent: Daemon) -> None:
    wait_for(lambda: master.run_json("car-0001", "test.ping", "--timeout", "3")[1]
             == {"car-0001": True}, timeout=90, interval=0.5,
             what=f"the agent to answer a ping\n{agent.log_tail()}")


def events(agent: Daemon, name: str) -> list[dict[str, object]]:
    return [event for event in agent.log_events() if event.get("event") == name]


def apply(master: MasterDaemon, sls: str) -> dict[str, object]:
    code, data = master.run_json("car-0001", "state.sls", sls, "--timeout", "30", timeout=60)
    assert code == 0, data
    (result,) = data["car-0001"].values()
    assert result["result"] is True and result["changes"], result
    return dict(result)


def test_a_config_that_cannot_reach_the_master_is_rolled_back(
        car: tuple[MasterDaemon, Daemon, Path]) -> None:
    master, agent, dropins = car
    assert agent.proc is not None
    pid = agent.proc.pid
    result = apply(master, "unreachable")
    assert "restarts when this run has returned" in str(result["comment"])
    wait_for(lambda: events(agent, "selfconfig.rolled_back"), timeout=90, interval=0.5,
             what=f"the rollback\n{agent.log_tail()}")
    ping(master, agent)
    assert agent.alive and agent.proc.pid == pid  # re-executed in place, not a new process
    assert yaml.safe_load((dropins / "50-states.yaml").read_text()) is None
    assert not (dropins / "50-states.trial").exists()
    assert len(events(agent, "agent.reexec")) == 2  # into the change, then back out of it


def test_a_config_that_reaches_the_master_is_confirmed(
        car: tuple[MasterDaemon, Daemon, Path]) -> None:
    master, agent, dropins = car
    apply(master, "fleet")
    wait_for(lambda: events(agent, "selfconfig.confirmed"), timeout=90, interval=0.5,
             what=f"the new config to be confirmed\n{agent.log_tail()}")
    code, data = master.run_json("car-0001", "grains.get", "fleet")
    assert (code, data) == (0, {"car-0001": "taxis"})
    assert yaml.safe_load((dropins / "50-states.yaml").read_text()) == {
        "grains": {"fleet": "taxis"}}
    assert not (dropins / "50-states.trial").exists()
    assert not events(agent, "selfconfig.rolled_back")
