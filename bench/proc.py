"""Daemons started by the benchmark: own session, output drained to a file, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """A benchmark could not be run (a daemon died, did not get ready, gave a wrong answer)."""


class Reaper:
    """Process groups started by this run, so that an interrupted run leaves none behind."""

    def __init__(self) -> None:
        self.groups: set[int] = set()

    def track(self, pgid: int | None) -> None:
        if pgid is not None:
            self.groups.add(pgid)

    def reap(self) -> None:
        """SIGKILL every tracked group that still has a member."""
        for pgid in sorted(self.groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self.groups.clear()


# The one piece of global state: the run's safety net, emptied by reap() at exit.
REAPER = Reaper()


def project_env() -> dict[str, str]:
    """The environment for our programs: the repository first on the module path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    """Poll ``check`` until it returns something truthy; BenchError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


class Spawned:
    """A process in its own session; its output goes to ``log_path`` line by line.

    ``marker`` (bytes) is watched for in the output: ``marked_at`` is the
    ``time.perf_counter()`` at which the first line holding it was read.
    """

    def __init__(self, argv: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None,
                 marker: bytes | None = None, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.marker = marker
        self.marked = threading.Event()
        self.marked_at = 0.0
        self.marked_line = b""
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=env or project_env(), cwd=cwd or REPO)
        REAPER.track(self.proc.pid)
        self._drain = threading.Thread(target=self._pump, daemon=True)
        self._drain.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("ab") as log:
            for line in self.proc.stdout:
                seen = time.perf_counter()
                log.write(line)
                log.flush()
                if self.marker is not None and not self.marked.is_set() and self.marker in line:
                    self.marked_at, self.marked_line = seen, line
                    self.marked.set()

    def wait_marked(self, timeout: float) -> float:
        """Seconds from spawn to the marker line; BenchError if the process dies or times out."""
        deadline = time.monotonic() + timeout
        while not self.marked.wait(0.05):
            if not self.alive:
                raise BenchError(f"{self.argv[0]} exited ({self.proc.returncode}) before "
                                 f"{self.marker!r}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.argv[0]}: no {self.marker!r} within {timeout:.0f} s:\n"
                                 f"{self.tail()}")
        return self.marked_at - self.started_at

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``, reap it."""
        if self.alive:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(5)
        self._signal(signal.SIGKILL)  # children that outlived the leader share its group
        self._drain.join(5)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def timed_run(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60.0,
              expect: str = "", cwd: Path | None = None) -> float:
    """Wall seconds of one command run to completion; BenchError unless it succeeds."""
    start = time.perf_counter()
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env or project_env(), cwd=cwd or REPO)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or expect not in proc.stdout:
        raise BenchError(f"$ {' '.join(argv)} -> exit {proc.returncode}, expected {expect!r}\n"
                         f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}")
    return elapsed
