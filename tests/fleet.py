"""Real daemons for end-to-end tests: a cloud-master and agents as subprocesses on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Daemon:
    """A daemon started by a test, stopped by PID (and its process group) at the end."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=_env())
        log.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class MasterDaemon(Daemon):
    config: Path = field(default=Path())
    opts: dict[str, Any] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 30.0, check: bool = False,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "cloud_master.cli", "-c", str(self.config),
                               *args], capture_output=True, text=True, timeout=timeout,
                              env=_env(), input=input_text)
        if check and proc.returncode != 0:
            raise AssertionError(f"cloud-master {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}\n--- master log:\n{self.log_tail()}")
        return proc

    def run_json(self, *args: str, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        proc = self.cli("run", *args, "--out", "json", timeout=timeout)
        try:
            data = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except ValueError as err:
            raise AssertionError(f"not JSON: {proc.stdout!r} / {proc.stderr!r}") from err
        return proc.returncode, data

    def keys(self) -> dict[str, list[str]]:
        return json.loads(self.cli("key", "list", "--out", "json", check=True).stdout)

    def control_ready(self) -> bool:
        return (Path(self.opts["sock_dir"]) / "master-control.ipc").exists()


def make_master(root: Path, **overrides: Any) -> MasterDaemon:
    opts = {"interface": "127.0.0.1", "publish_port": free_port(), "ret_port": free_port(),
            "root_dir": str(root), "sock_dir": str(root / "run"), "log_format": "json",
            "log_level": "debug", "loop_interval": 1, "timeout": 10}
    opts.update(overrides)
    config = write_yaml(root / "master.yaml", opts)
    argv = [sys.executable, "-m", "cloud_master.cli", "-c", str(config), "serve"]
    return MasterDaemon("master", argv, root / "master.log", config=config, opts=opts)


def make_agent(root: Path, master: MasterDaemon, minion_id: str, **overrides: Any) -> Daemon:
    opts = {"id": minion_id, "master": "127.0.0.1", "master_port": master.opts["ret_port"],
            "publish_port": master.opts["publish_port"], "root_dir": str(root),
            "log_format": "json", "log_level": "debug", "acceptance_wait_time": 0.2,
            "random_reauth_delay": 0.2, "recon_default": 100, "recon_max": 1000,
            "grains": {"fleet": "test"}}
    opts.update(overrides)
    config = write_yaml(root / "agent.yaml", opts)
    argv = [sys.executable, "-m", "autopi_agent.cli", "-c", str(config), "serve"]
    return Daemon(minion_id, argv, root / "agent.log")
