"""Execution module ``cmd``: run shell commands, only where the config allows it.

Off unless the agent config sets ``cmd_enabled: true``. The command's environment and
arguments are never logged (they may hold secrets); only the program name is.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from autopi_agent.minion.context import AgentContext, JobControl, WithRetcode, current_job
from autopi_agent.minion.errors import CommandExecutionError

__all__ = ["run", "run_all"]

log = structlog.get_logger(__name__)

# How often a running command checks whether its job was cancelled, in seconds.
_POLL = 0.2


@dataclass(frozen=True, slots=True)
class _Completed:
    pid: int
    retcode: int
    stdout: str
    stderr: str


def run(ctx: AgentContext, cmd: str | Sequence[str], cwd: str | None = None,
        stdin: str | None = None, env: Mapping[str, Any] | None = None,
        timeout: float | None = None, python_shell: bool | None = None,
        shell: str = "/bin/sh", rstrip: bool = True) -> WithRetcode:
    """Run ``cmd`` and return its output, stdout and stderr together, as one string.

    The job's retcode is the command's exit status. ``cmd`` is a string, run by ``shell``
    unless ``python_shell=False`` (then split like a shell would, without one), or a list
    of arguments (never a shell). ``cwd`` is the working directory, ``stdin`` text fed to
    the command, ``env`` variables added to the agent's environment, ``timeout`` seconds
    before the command is killed (then the output says so and the retcode is 1).
    ``rstrip`` drops trailing whitespace.

    Errors: refused unless ``cmd_enabled: true`` is in the agent config; a missing program
    or working directory is reported as an error.

    CLI Example::

        cloud-master run car-0001 cmd.run 'vcgencmd measure_temp'
        cloud-master run car-0001 cmd.run 'ls -l' cwd=/var/log timeout=10
    """
    done = _execute(ctx, "cmd.run", cmd, cwd=cwd, stdin=stdin, env=env, timeout=timeout,
                    python_shell=python_shell, shell=shell, merge_stderr=True, rstrip=rstrip)
    return WithRetcode(done.stdout, done.retcode)


def run_all(ctx: AgentContext, cmd: str | Sequence[str], cwd: str | None = None,
            stdin: str | None = None, env: Mapping[str, Any] | None = None,
            timeout: float | None = None, python_shell: bool | None = None,
            shell: str = "/bin/sh", rstrip: bool = True) -> WithRetcode:
    """Run ``cmd`` and return ``{"pid", "retcode", "stdout", "stderr"}``, output kept apart.

    Arguments and errors as for cmd.run; the job's retcode is the command's exit status.

    CLI Example::

        cloud-master run car-0001 cmd.run_all 'systemctl is-active autopi-agent'
    """
    done = _execute(ctx, "cmd.run_all", cmd, cwd=cwd, stdin=stdin, env=env, timeout=timeout,
                    python_shell=python_shell, shell=shell, merge_stderr=False,
                    rstrip=rstrip)
    ret = {"pid": done.pid, "retcode": done.retcode, "stdout": done.stdout,
           "stderr": done.stderr}
    return WithRetcode(ret, done.retcode)


def _execute(ctx: AgentContext, fun: str, cmd: str | Sequence[str], *, cwd: str | None,
             stdin: str | None, env: Mapping[str, Any] | None, timeout: float | None,
             python_shell: bool | None, shell: str, merge_stderr: bool,
             rstrip: bool) -> _Completed:
    if not ctx.cmd_enabled:
        raise CommandExecutionError(
            f"{fun} is disabled on this agent: shell access is off unless the agent "
            "config sets 'cmd_enabled: true'")
    argv, use_shell = _argv(fun, cmd, python_shell)
    log.info("cmd.started", fun=fun, program=_program(argv, use_shell), cwd=cwd)
    proc = _spawn(fun, argv, use_shell, shell=shell, cwd=cwd, env=_environment(fun, env),
                  has_stdin=stdin is not None, merge_stderr=merge_stderr)
    out, err, timed_out = _communicate(proc, stdin, timeout, current_job())
    if timed_out:
        # Salt's wording for a command that ran out of time.
        return _Completed(proc.pid, 1, f"{cmd} : Timed out after {timeout:g} seconds", "")
    stdout, stderr = _decode(out, rstrip), _decode(err, rstrip)
    log.info("cmd.finished", fun=fun, pid=proc.pid, retcode=proc.returncode)
    return _Completed(proc.pid, proc.returncode, stdout, stderr)


def _argv(fun: str, cmd: Any, python_shell: bool | None) -> tuple[list[str], bool]:
    if isinstance(cmd, str):
        if not cmd.strip():
            raise CommandExecutionError(f"{fun}: the command is empty")
        if python_shell is False:
            return shlex.split(cmd), False
        return [cmd], True
    if isinstance(cmd, Sequence) and cmd and all(isinstance(part, str) for part in cmd):
        return list(cmd), False
    raise CommandExecutionError(f"{fun}: cmd must be a string or a non-empty list of strings")


def _program(argv: list[str], use_shell: bool) -> str:
    first = argv[0].split(maxsplit=1)[0] if use_shell else argv[0]
    return os.path.basename(first)


def _environment(fun: str, env: Mapping[str, Any] | None) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, Mapping):
        raise CommandExecutionError(f"{fun}: env must be a mapping of names to values")
    merged = dict(os.environ)
    merged.update({str(key): str(value) for key, value in env.items()})
    return merged


def _spawn(fun: str, argv: list[str], use_shell: bool, *, shell: str, cwd: str | None,
           env: dict[str, str] | None, has_stdin: bool,
           merge_stderr: bool) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv[0] if use_shell else argv, shell=use_shell,
            executable=shell if use_shell else None, cwd=cwd, env=env,
            stdin=subprocess.PIPE if has_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            start_new_session=True)  # its own process group, so a kill reaches children
    except OSError as err:
        raise CommandExecutionError(f"{fun}: cannot start the command: "
                                    f"{err.strerror or err}") from err


def _communicate(proc: subprocess.Popen[bytes], stdin: str | None, timeout: float | None,
                 control: JobControl) -> tuple[bytes, bytes, bool]:
    deadline = None if timeout is None else time.monotonic() + timeout
    data = stdin.encode() if stdin is not None else None
    while True:
        left = _POLL if deadline is None else deadline - time.monotonic()
        try:
            out, err = proc.communicate(data, timeout=max(0.0, min(_POLL, left)))
            return out or b"", err or b"", False
        except subprocess.TimeoutExpired:
            data = None  # input is sent once; retries only collect output
        if control.cancelled:
            _kill(proc)
            control.check()
        if deadline is not None and time.monotonic() >= deadline:
            _kill(proc)
            return b"", b"", True


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _decode(data: bytes, rstrip: bool) -> str:
    text = data.decode("utf-8", errors="replace")
    return text.rstrip() if rstrip else text
