"""Our side, one agent: start-up, idle memory, CLI and client API round trips, local call."""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import keys, procfs
from bench.proc import REPO, BenchError, Spawned, project_env, timed_run, wait_for

BIN = Path(sys.executable).parent
# Where `autopi-agent` is run from: the product venv when bench.run could build it.
AGENT_BIN = BIN
READY_MARK = b'"agent.ready"'
AGENT_ID = "bench-car-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class OurMaster:
    """A `cloud-master serve` subprocess on loopback with its config under ``root``."""

    root: Path
    opts: dict[str, Any]
    config: Path
    daemon: Spawned | None = None

    @classmethod
    def create(cls, root: Path, **overrides: Any) -> OurMaster:
        opts = {"interface": "127.0.0.1", "publish_port": free_port(), "ret_port": free_port(),
                "root_dir": str(root), "sock_dir": str(root / "run"), "log_format": "json"}
        opts.update(overrides)
        return cls(root, opts, write_yaml(root / "master.yaml", opts))

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki" / "master"

    @property
    def sock_dir(self) -> Path:
        return Path(self.opts["sock_dir"])

    def start(self, timeout: float = 30.0) -> None:
        self.daemon = Spawned([str(BIN / "cloud-master"), "-c", str(self.config), "serve"],
                              self.root / "master.log")
        from cloud_master.client import MasterClient

        def answers() -> bool:
            if not (self.sock_dir / "master-control.ipc").exists():
                assert self.daemon is not None
                if not self.daemon.alive:
                    raise BenchError(f"cloud-master exited:\n{self.daemon.tail()}")
                return False
            with MasterClient(self.sock_dir) as client:
                return bool(client.ping(timeout=5.0).get("ok"))

        wait_for(answers, timeout, "cloud-master to answer on its control socket", 0.02)

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def accept(self, minion_id: str, key_dir: Path, agent_pki: Path) -> None:
        keys.preaccept(self.pki_dir, minion_id, keys.install_agent_keys(key_dir, agent_pki))


def agent_config(root: Path, master: OurMaster, minion_id: str, **overrides: Any) -> Path:
    opts = {"id": minion_id, "master": "127.0.0.1", "master_port": master.opts["ret_port"],
            "publish_port": master.opts["publish_port"], "root_dir": str(root),
            "log_format": "json", "log_level": "info"}
    opts.update(overrides)
    return write_yaml(root / "agent.yaml", opts)


def start_agent(config: Path, log_path: Path) -> Spawned:
    return Spawned([str(AGENT_BIN / "autopi-agent"), "-c", str(config), "serve"], log_path,
                   marker=READY_MARK)


def obd_loaded_at_start() -> bool:
    """Whether importing the agent daemon (as `autopi-agent serve` does) imports python-OBD."""
    import subprocess

    code = ("import sys, autopi_agent.cli, autopi_agent.minion.daemon; "
            "print('obd' in sys.modules or 'pint' in sys.modules)")
    out = subprocess.run([str(AGENT_BIN / "python"), "-c", code], capture_output=True, text=True,
                         env=project_env(), cwd=REPO, timeout=60)
    return out.stdout.strip() == "True"


class OurSide:
    """Our master with one agent, sampled one measurement at a time (see bench.single)."""

    name = "ours"

    def __init__(self, work: Path, key_dir: Path) -> None:
        self.work = work
        self.master = OurMaster.create(work / "master")
        self.agent_root = work / "agent"
        self.master.accept(AGENT_ID, key_dir, self.agent_root / "pki" / "minion")
        self.config = agent_config(self.agent_root, self.master, AGENT_ID)
        self.agent: Spawned | None = None
        self.client: Any = None
        self._call_config = write_yaml(work / "call" / "agent.yaml",
                                       {"id": "bench-call", "root_dir": str(work / "call")})

    def open(self) -> None:
        self.master.start()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.agent is not None:
            self.agent.stop()
        self.master.stop()

    def start_agent(self) -> float:
        """Seconds from spawning `autopi-agent serve` to its agent.ready line."""
        if self.agent is not None:
            self.agent.stop()
        self.agent = start_agent(self.config, self.agent_root / "agent.log")
        return self.agent.wait_marked(60.0)

    def agent_rss(self) -> float:
        assert self.agent is not None
        if not self.agent.alive:
            raise BenchError(f"the agent died after start:\n{self.agent.tail()}")
        return procfs.group_rss_mib(self.agent.pid)

    def agent_pss(self) -> float:
        assert self.agent is not None
        return procfs.group_pss_mib(self.agent.pid)

    def master_pss(self) -> float:
        assert self.master.daemon is not None
        return procfs.group_pss_mib(self.master.daemon.pid)

    def cli(self) -> float:
        argv = [str(BIN / "cloud-master"), "-c", str(self.master.config), "run", "*", "test.ping"]
        return timed_run(argv, expect=AGENT_ID)

    def api(self) -> float:
        """One MasterClient.cmd round trip (the client is made, and connects, on first use)."""
        from cloud_master.client import MasterClient

        if self.client is None:
            self.client = MasterClient(self.master.sock_dir)
            self.client.cmd("*", "test.ping", timeout=10)
        begin = time.perf_counter()
        result = self.client.cmd("*", "test.ping", timeout=10)
        elapsed = time.perf_counter() - begin
        if result != {AGENT_ID: True}:
            raise BenchError(f"client API test.ping returned {result!r}")
        return elapsed

    def call(self) -> float:
        argv = [str(AGENT_BIN / "autopi-agent"), "-c", str(self._call_config), "call", "test.ping"]
        return timed_run(argv, expect="true")
