"""Interoperability with real Salt 3008: a stock salt-master runs jobs on our agent, and a
stock salt-minion is managed by our cloud-master."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Daemon, MasterDaemon, make_master, wait_for, write_yaml

from . import saltpeer


@pytest.fixture
def short_root() -> Iterator[Path]:
    # IPC socket paths must stay short: pytest's tmp_path can be too long for them.
    with tempfile.TemporaryDirectory(prefix="ap-") as base:
        yield Path(base)


def start_agent(root: Path, minion_id: str, master_port: int, publish_port: int,
                **extra: Any) -> Daemon:
    opts = {"id": minion_id, "master": "127.0.0.1", "master_port": master_port,
            "publish_port": publish_port, "root_dir": str(root), "log_format": "json",
            "log_level": "debug", "acceptance_wait_time": 0.3, "random_reauth_delay": 0.2,
            "grains": {"fleet": "interop"}, **extra}
    config = write_yaml(root / "agent.yaml", opts)
    import sys

    agent = Daemon(minion_id, [sys.executable, "-m", "autopi_agent.cli", "-c", str(config),
                               "serve"], root / "agent.log")
    agent.start()
    return agent


# -- (a) a stock salt-master and our agent -----------------------------------------------

@pytest.fixture
def agent_on_salt(salt_master: saltpeer.SaltMaster, short_root: Path) -> Iterator[Daemon]:
    agent = start_agent(short_root / "agent", "car-0001", salt_master.ret_port,
                        salt_master.publish_port)
    try:
        salt_master.wait_key("car-0001", "minions_pre")
        salt_master.accept_key("car-0001")
        wait_for(lambda: _salt_ping(salt_master), timeout=30,
                 what=f"our agent to answer salt's ping\n{agent.log_tail()}")
        yield agent
    finally:
        agent.stop()


def _salt_ping(master: saltpeer.SaltMaster) -> bool:
    try:
        return bool(master.salt("car-0001", "test.ping", timeout=3) == {"car-0001": True})
    except saltpeer.SaltCliError:
        return False


def test_salt_master_runs_ping_echo_and_grains_on_our_agent(
        salt_master: saltpeer.SaltMaster, agent_on_salt: Daemon) -> None:
    assert salt_master.salt("*", "test.ping") == {"car-0001": True}
    assert salt_master.salt("car-0001", "test.echo", "hi") == {"car-0001": "hi"}
    grains = salt_master.salt("car-0001", "grains.items")["car-0001"]
    assert grains["id"] == "car-0001" and grains["fleet"] == "interop"
    assert grains["saltversion"].startswith("3008") and "os" in grains


def test_salt_master_grain_targeting_and_errors(
        salt_master: saltpeer.SaltMaster, agent_on_salt: Daemon) -> None:
    # The stock master learned our grains from the agent's _pillar request.
    assert salt_master.salt("fleet:interop", "test.ping", tgt_type="grain") == {"car-0001": True}
    out = salt_master.salt("car-0001", "nope.missing", static=False)
    assert "'nope.missing' is not available" in str(out["car-0001"])
    assert salt_master.salt("car-0001", "test.arg", "a", "b=2")["car-0001"]["kwargs"]["b"] == 2
    assert agent_on_salt.alive


# -- (b) a stock salt-minion and our master ----------------------------------------------

@pytest.fixture
def our_master(short_root: Path) -> Iterator[MasterDaemon]:
    master = make_master(short_root / "m")
    master.start()
    try:
        wait_for(master.control_ready, what="cloud-master")
        yield master
    finally:
        master.stop()


def test_stock_minion_managed_by_our_master(our_master: MasterDaemon,
                                            salt_minion_factory: saltpeer.MinionFactory) -> None:
    salt_minion_factory("salty", master_port=our_master.opts["ret_port"],
                        publish_port=our_master.opts["publish_port"])
    wait_for(lambda: "salty" in our_master.keys().get("pending", []), timeout=30,
             what=f"the stock minion's key\n{our_master.log_tail()}")
    our_master.cli("key", "accept", "salty", "-y", check=True)

    def pinged() -> dict[str, Any]:
        code, data = our_master.run_json("*", "test.ping", "--timeout", "5")
        return data if code == 0 else {}

    assert wait_for(pinged, timeout=60, what=f"salty's ping\n{our_master.log_tail()}") == {
        "salty": True}
    assert our_master.run_json("salty", "test.echo", "hello") == (0, {"salty": "hello"})
    code, data = our_master.run_json("salty", "test.arg", "1", "x=[1, 2]")
    assert code == 0 and data["salty"]["args"] == [1] and data["salty"]["kwargs"]["x"] == [1, 2]
    # Grain targeting from the grains the stock minion sent in its _pillar request.
    code, data = our_master.run_json("-G", "kernel:Linux", "test.ping")
    assert (code, data) == (0, {"salty": True})
