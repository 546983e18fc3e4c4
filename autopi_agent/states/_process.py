"""Run a system program for a state module (systemctl, apt-get, dpkg-query): no shell, bounded."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

__all__ = ["Completed", "ProgramMissing", "run_program"]

log = structlog.get_logger(__name__)


class ProgramMissing(Exception):
    """The program is not installed (not on PATH)."""


@dataclass(frozen=True, slots=True)
class Completed:
    """A finished program: exit status and its output, stripped."""

    retcode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True when the program exited 0."""
        return self.retcode == 0


def run_program(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                timeout: float = 600.0) -> Completed:
    """Run ``argv`` (looked up on PATH); a timeout counts as a failure, retcode 124."""
    environment = {**os.environ, **(env or {})}
    log.debug("state.program", program=argv[0], args=len(argv) - 1)
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env=environment, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError as err:
        raise ProgramMissing(f"{argv[0]} is not installed (not found on PATH)") from err
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"{argv[0]} timed out after {timeout:g} s")
    return Completed(done.returncode, done.stdout.strip(), done.stderr.strip())
