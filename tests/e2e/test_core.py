"""End to end: the real cloud-master CLI and daemon, real agents, real keys, ZeroMQ on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from tests.fleet import Daemon, MasterDaemon, wait_for


def ping_ok(master: MasterDaemon, target: str = "*") -> dict[str, object]:
    code, data = master.run_json(target, "test.ping", "--timeout", "5")
    return data if code == 0 else {}


def test_enrol_accept_and_ping(master: MasterDaemon, agent_factory: Callable[..., Daemon]) -> None:
    agent = agent_factory("car-0001")
    data = wait_for(lambda: ping_ok(master), what=f"a ping answer\n{agent.log_tail()}")
    assert data == {"car-0001": True}
    assert master.keys()["accepted"] == ["car-0001"]


def test_pending_minion_gets_no_job(master: MasterDaemon, agent_factory: Callable[..., Daemon]) -> None:
    agent = agent_factory("car-0009", accept=False)
    wait_for(lambda: "car-0009" in master.keys().get("pending", []), what="a pending key")
    code, data = master.run_json("*", "test.ping", "--timeout", "1")
    assert (code, data) != (0, {"car-0009": True})
    assert data == {}
    assert agent.alive


def test_echo_grains_targeting_and_list_functions(master: MasterDaemon,
                                                  agent_factory: Callable[..., Daemon]) -> None:
    agent_factory("car-0001")
    agent_factory("car-0002", grains={"fleet": "north"})
    wait_for(lambda: ping_ok(master).keys() == {"car-0001", "car-0002"}, what="two agents")
    assert master.run_json("car-0001", "test.echo", "hi") == (0, {"car-0001": "hi"})
    code, data = master.run_json("car-*", "grains.get", "fleet")
    assert (code, data) == (0, {"car-0001": "test", "car-0002": "north"})
    code, data = master.run_json("-G", "fleet:north", "test.ping")
    assert (code, data) == (0, {"car-0002": True})
    code, data = master.run_json("-L", "car-0001,car-0002", "test.echo", "x=1")
    assert code != 0 or data  # test.echo takes no x: a clear error, not a crash
    code, data = master.run_json("car-0001", "sys.list_functions", "test")
    assert code == 0 and "test.ping" in data["car-0001"]


def test_errors_have_retcodes_and_agent_survives(master: MasterDaemon,
                                                 agent_factory: Callable[..., Daemon]) -> None:
    agent = agent_factory("car-0001")
    wait_for(lambda: ping_ok(master), what="agent up")
    code, data = master.run_json("car-0001", "nope.missing")
    assert code != 0 and "'nope.missing' is not available" in data["car-0001"]
    code, data = master.run_json("car-0001", "test.echo")
    assert code != 0 and "test.echo" in data["car-0001"]
    code, data = master.run_json("car-0001", "cmd.run", "id")
    assert code != 0  # shell access is off unless configured
    assert agent.alive and ping_ok(master) == {"car-0001": True}


def test_slow_job_does_not_delay_ping(master: MasterDaemon,
                                      agent_factory: Callable[..., Daemon]) -> None:
    agent_factory("car-0001")
    wait_for(lambda: ping_ok(master), what="agent up")
    sleeper = master.cli("run", "--async", "car-0001", "test.sleep", "30", check=True)
    jid = sleeper.stdout.split()[-1]
    assert ping_ok(master) == {"car-0001": True}
    shown = master.cli("jobs", "show", jid, "--out", "json")
    assert "car-0001: no return" in shown.stderr  # the sleep is still running


def test_missing_minion_is_listed_and_fails(master: MasterDaemon,
                                            agent_factory: Callable[..., Daemon]) -> None:
    agent = agent_factory("car-0001")
    wait_for(lambda: ping_ok(master), what="agent up")
    agent.stop()
    proc = master.cli("run", "*", "test.ping", "--timeout", "1")
    assert proc.returncode != 0
    assert "car-0001: Minion did not return" in proc.stderr


def test_jobs_list_and_show(master: MasterDaemon, agent_factory: Callable[..., Daemon]) -> None:
    agent_factory("car-0001")
    wait_for(lambda: ping_ok(master), what="agent up")
    master.run_json("car-0001", "test.echo", "remember me")
    listing = master.cli("jobs", "list", check=True).stdout
    jid = next(line.split()[0] for line in listing.splitlines() if "test.echo" in line)
    shown = master.cli("jobs", "show", jid, "--out", "json", check=True).stdout
    assert json.loads(shown[shown.index("{"):]) == {"car-0001": "remember me"}
    listed = json.loads(master.cli("jobs", "list", "--out", "json", check=True).stdout)
    assert listed[jid]["fun"] == "test.echo" and listed[jid]["arg"] == ["remember me"]
    assert listed[jid]["minions"] == ["car-0001"]


def test_deleted_key_is_cut_off(master: MasterDaemon, agent_factory: Callable[..., Daemon]) -> None:
    agent_factory("car-0001")
    agent_factory("car-0002")
    wait_for(lambda: ping_ok(master).keys() == {"car-0001", "car-0002"}, what="two agents")
    master.cli("key", "delete", "car-0002", "-y", check=True)
    # The shared key rotated: car-0001 re-authenticates on its own, car-0002 cannot.
    data = wait_for(lambda: master.run_json("*", "test.echo", "after")[1],
                    what="car-0001 to answer after the rotation")
    assert data == {"car-0001": "after"}
    time.sleep(1)
    assert "car-0002" not in master.keys().get("accepted", [])


def test_master_restart_agents_reauthenticate(master: MasterDaemon,
                                              agent_factory: Callable[..., Daemon]) -> None:
    agent = agent_factory("car-0001")
    wait_for(lambda: ping_ok(master), what="agent up")
    jid = master.cli("run", "--async", "car-0001", "test.sleep", "2", check=True).stdout.split()[-1]
    master.stop()
    master.start()
    wait_for(master.control_ready, what="master back")
    # The return of the job that ran across the restart still arrives.
    wait_for(lambda: "car-0001: no return" not in master.cli("jobs", "show", jid).stderr,
             timeout=30, what=f"the sleep's return after the restart\n{agent.log_tail()}")
    assert wait_for(lambda: ping_ok(master), timeout=30, what="ping after restart")


def test_events_stream_shows_job_returns(master: MasterDaemon,
                                         agent_factory: Callable[..., Daemon]) -> None:
    import subprocess
    import sys

    from tests.fleet import REPO, _env

    agent_factory("car-0001")
    wait_for(lambda: ping_ok(master), what="agent up")
    watcher = subprocess.Popen([sys.executable, "-m", "cloud_master.cli", "-c", str(master.config),
                                "events", "--tag", "salt/job/*/ret/*", "--count", "1"],
                               stdout=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    try:
        time.sleep(1.0)  # let the subscription reach the publisher
        master.run_json("car-0001", "test.echo", "on the bus")
        out, _ = watcher.communicate(timeout=20)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    event = json.loads(out.splitlines()[0])
    assert event["tag"].endswith("/ret/car-0001")
    assert event["data"]["return"] == "on the bus"


def test_agent_runs_without_the_stdlib_openssl(master: MasterDaemon,
                                               agent_factory: Callable[..., Daemon]) -> None:
    """Authenticated and answering, the daemon has not mapped libssl or CPython's _ssl/_hashlib.

    All its cryptography goes through the cryptography package (autopi_agent/lean.py); the
    stdlib's OpenSSL binding would cost ~4 MiB of RSS for nothing.
    """
    agent = agent_factory("car-0001")
    wait_for(lambda: ping_ok(master), what=f"agent up\n{agent.log_tail()}")
    assert master.run_json("car-0001", "test.echo", "x" * 5000) == (0, {"car-0001": "x" * 5000})
    maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
    mapped = {line.split()[-1].rsplit("/", 1)[-1] for line in maps.splitlines() if "/" in line}
    assert not {name for name in mapped if name.startswith(("libssl.so", "_ssl.", "_hashlib."))}
    assert any(name.startswith("_rust.abi3") for name in mapped)  # cryptography is loaded
