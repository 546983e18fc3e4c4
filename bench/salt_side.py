"""Real Salt 3008 measured the same way as ours: salt-minion start-up and memory, the salt
CLI, LocalClient, salt-call --local, salt-master memory.

The daemons come from the interoperability harness (tests/interop/saltpeer.py). Salt runs
with its own defaults except what a loopback test needs (ports, paths, fast re-auth) and
the minion's log file at info, which is where "Minion is ready" is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from bench import procfs
from bench.proc import REAPER, BenchError, timed_run
from tests.interop.saltpeer import (
    MINION_READY_LINE,
    SaltMaster,
    SaltMinion,
    SaltVenv,
)

MINION_ID = "salt-car-1"
LOCALCLIENT = Path(__file__).resolve().parent / "salt_localclient.py"
# Salt's defaults, which the test harness lowers for speed.
MASTER_EXTRA = {"worker_threads": 5, "log_level_logfile": "warning"}
MINION_EXTRA = {"log_level_logfile": "info"}


def _salt_env() -> dict[str, str]:
    # Salt's interpreter must not see the project's module path.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def start_master(venv: SaltVenv, root: Path) -> SaltMaster:
    master = SaltMaster.create(venv, root, extra=MASTER_EXTRA)
    master.start()
    REAPER.track(master.pid)
    master.wait_ready(timeout=90)
    return master


def make_minion(venv: SaltVenv, root: Path, master: SaltMaster, minion_id: str) -> SaltMinion:
    minion = SaltMinion.create(venv, root, minion_id=minion_id, master_port=master.ret_port,
                               publish_port=master.publish_port, extra=MINION_EXTRA)
    master.preaccept(minion)
    return minion


def start_minion(minion: SaltMinion, timeout: float = 90.0) -> float:
    """Seconds from spawning salt-minion to its "Minion is ready" log line."""
    minion.log_path.unlink(missing_ok=True)
    # A SIGKILLed minion leaves its pid files, naming a zombie that looks alive to Salt.
    pidfile = Path(minion.opts["pidfile"])
    for stale in (pidfile, pidfile.with_name("process_responsibility_" + pidfile.name)):
        stale.unlink(missing_ok=True)
    begin = time.perf_counter()
    minion.start()
    REAPER.track(minion.pid)
    deadline = time.monotonic() + timeout
    while MINION_READY_LINE not in minion.log_text():
        if not minion.running:
            raise BenchError(f"salt-minion exited during start\n{minion.diagnostics()}")
        if time.monotonic() > deadline:
            raise BenchError(f"salt-minion not ready within {timeout:.0f} s\n{minion.diagnostics()}")
        time.sleep(0.01)
    return time.perf_counter() - begin


class LocalClientProcess:
    """A Salt-venv process holding one LocalClient; each ``round()`` is one cmd call."""

    def __init__(self, venv: SaltVenv, master: SaltMaster, timeout: int = 15) -> None:
        argv = [str(venv.path / "bin" / "python"), str(LOCALCLIENT),
                str(master.config_dir / "master"), "*", str(timeout)]
        self.errors = master.root_dir / "localclient.err"
        with self.errors.open("ab") as errors:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=errors, text=True, env=_salt_env(),
                                         cwd=master.root_dir)
        self._expect("ready")

    def _expect(self, what: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise BenchError(f"the LocalClient process exited ({self.proc.returncode}) "
                             f"before {what}:\n{self.errors.read_text()[-3000:]}")
        return line

    def round(self) -> tuple[float, int]:
        """(seconds, minions that answered True) of one LocalClient.cmd('*', 'test.ping')."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        reply = json.loads(self._expect("a reply"))
        return float(reply["seconds"]), int(reply["returned"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class SaltSide:
    """A salt-master with one salt-minion, sampled one measurement at a time."""

    name = "salt"

    def __init__(self, venv: SaltVenv, work: Path) -> None:
        self.venv = venv
        self.work = work
        self.master: SaltMaster | None = None
        self.minion: SaltMinion | None = None
        self.client: LocalClientProcess | None = None

    def open(self) -> None:
        self.master = start_master(self.venv, self.work / "m")
        self.minion = make_minion(self.venv, self.work / "n", self.master, MINION_ID)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.minion is not None:
            self.minion.stop()
        if self.master is not None:
            self.master.stop()

    def start_agent(self) -> float:
        assert self.minion is not None
        if self.minion.running:
            self.minion.stop()
        return start_minion(self.minion)

    def agent_rss(self) -> float:
        assert self.minion is not None and self.minion.pid is not None
        if not self.minion.running:
            raise BenchError(f"salt-minion died after start\n{self.minion.diagnostics()}")
        return procfs.group_rss_mib(self.minion.pid)

    def agent_pss(self) -> float:
        assert self.minion is not None and self.minion.pid is not None
        return procfs.group_pss_mib(self.minion.pid)

    def master_pss(self) -> float:
        assert self.master is not None and self.master.pid is not None
        return procfs.group_pss_mib(self.master.pid)

    def cli(self) -> float:
        assert self.master is not None
        argv = [str(self.venv.executable("salt")), "-c", str(self.master.config_dir), "*",
                "test.ping"]
        return timed_run(argv, env=_salt_env(), cwd=self.master.root_dir, expect="True",
                         timeout=120)

    def api(self) -> float:
        assert self.master is not None
        if self.client is None:
            self.client = LocalClientProcess(self.venv, self.master)
            self.client.round()  # the first call connects
        seconds, returned = self.client.round()
        if returned != 1:
            raise BenchError(f"LocalClient.cmd got {returned} returns, expected 1")
        return seconds

    def call(self) -> float:
        assert self.minion is not None
        argv = [str(self.venv.executable("salt-call")), "-c", str(self.minion.config_dir),
                "--local", "test.ping"]
        return timed_run(argv, env=_salt_env(), cwd=self.minion.root_dir, expect="True",
                         timeout=120)
