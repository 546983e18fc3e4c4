"""The builtin execution modules: test, sys, grains, cmd (through the dispatcher too)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from autopi_agent import __version__
from autopi_agent.minion.context import AgentContext, JobControl, WithRetcode
from autopi_agent.minion.dispatch import Dispatcher, JobResult
from autopi_agent.minion.errors import CommandExecutionError, JobCancelled
from autopi_agent.minion.loader import BUILTIN_MODULES, Loader
from autopi_agent.modules import cmd, grains, test
from autopi_agent.modules import sys as sysmod

GRAINS: dict[str, Any] = {
    "id": "car-0001",
    "os": "Debian",
    "osmajorrelease": 12,
    "ip4_interfaces": {"wlan0": ["192.168.4.23"], "lo": ["127.0.0.1"]},
    "pkg": {"a:b": "colon-key"},
    "roles": [{"name": "logger"}],
}


def make_ctx(**opts: Any) -> AgentContext:
    return AgentContext.create({"id": "car-0001", **opts}, grains=GRAINS,
                               loader=Loader(entry_points=False))


def run_job(ctx: AgentContext, fun: str, *arg: Any, timeout: float | None = None) -> JobResult:
    async def main() -> JobResult:
        dispatcher = Dispatcher(ctx)
        try:
            return await dispatcher.run(fun, list(arg), timeout=timeout)
        finally:
            await dispatcher.aclose()

    return asyncio.run(main())


def live_group_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are not zombies (an orphan waits for init)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.fixture
def ctx() -> AgentContext:
    return make_ctx()


@pytest.fixture
def shell_ctx() -> AgentContext:
    return make_ctx(cmd_enabled=True)


# --- test ---------------------------------------------------------------------------------


def test_test_module(ctx: AgentContext) -> None:
    assert test.ping(ctx) is True
    assert test.echo("hi") == "hi"
    assert test.version() == __version__ == "0.1.0"
    assert test.arg(1, "two", x=3) == {"args": [1, "two"], "kwargs": {"x": 3}}
    assert test.kwarg(a=1) == {"a": 1}
    assert test.sleep(0) is True
    assert test.sleep("0.01") is True  # type: ignore[arg-type]  # the wire may send text
    assert test.retcode() == WithRetcode(True, 42)
    with pytest.raises(Exception, match="^Test Exception$"):
        test.exception()


@pytest.mark.parametrize("length", [-1, "soon", None])
def test_sleep_refuses_bad_lengths(length: Any) -> None:
    with pytest.raises(CommandExecutionError, match="test.sleep: length must be"):
        test.sleep(length)


def test_job_control_cancels_a_sleep() -> None:
    control = JobControl()
    control.cancel("stop now")
    with pytest.raises(JobCancelled, match="stop now"):
        control.sleep(30)
    assert control.cancelled


def test_test_module_through_the_wire(ctx: AgentContext) -> None:
    assert run_job(ctx, "test.echo", "hi") == JobResult("hi", 0, True)
    assert run_job(ctx, "test.version") == JobResult("0.1.0", 0, True)
    assert run_job(ctx, "test.arg", 1, "txt=hello", "wow={a: 1}").ret == \
        {"args": [1], "kwargs": {"txt": "hello", "wow": {"a": 1}}}
    assert run_job(ctx, "test.sleep", "length=0") == JobResult(True, 0, True)
    assert run_job(ctx, "test.retcode", "code=3") == JobResult(True, 3, False)


# --- sys ----------------------------------------------------------------------------------


def test_sys_lists_functions(ctx: AgentContext) -> None:
    everything = sysmod.list_functions(ctx)
    assert {"test.ping", "sys.doc", "grains.get", "cmd.run", "cmd.run_all"} <= set(everything)
    assert everything == sorted(everything)
    assert sysmod.list_functions(ctx, "sys") == ["sys.doc", "sys.list_functions",
                                                 "sys.list_modules"]
    assert sysmod.list_functions(ctx, "sys.list_*") == ["sys.list_functions", "sys.list_modules"]
    assert sysmod.list_functions(ctx, "cmd", "sys.doc") == ["cmd.run", "cmd.run_all", "sys.doc"]
    assert sysmod.list_functions(ctx, "sy") == []


def test_sys_lists_modules(ctx: AgentContext) -> None:
    assert sysmod.list_modules(ctx) == sorted(BUILTIN_MODULES)
    assert sysmod.list_modules(ctx, "sy*", "t*") == ["sys", "test"]
    assert sysmod.list_modules(ctx, "nothing") == []


def test_sys_doc(ctx: AgentContext) -> None:
    docs = sysmod.doc(ctx, "test.echo")
    assert list(docs) == ["test.echo"]
    assert "cloud-master run car-0001 test.echo hi" in docs["test.echo"]
    assert list(sysmod.doc(ctx, "sys")) == ["sys.doc", "sys.list_functions", "sys.list_modules"]
    assert list(sysmod.doc(ctx, "grains.i*")) == ["grains.item", "grains.items"]
    assert sysmod.doc(ctx, "nothing") == {}


def test_every_builtin_function_is_documented(ctx: AgentContext) -> None:
    docs = sysmod.doc(ctx)
    assert set(docs) == set(sysmod.list_functions(ctx))
    for name, text in docs.items():
        assert f"cloud-master run car-0001 {name}" in text, name


def test_builtin_table_names_the_files() -> None:
    # A reader finds `obd.query` in the file named `obd`.
    modules_dir = Path(__file__).resolve().parents[2] / "autopi_agent" / "modules"
    for name, path in BUILTIN_MODULES.items():
        assert path == f"autopi_agent.modules.{name}"
        assert (modules_dir / f"{name}.py").is_file()


# --- grains -------------------------------------------------------------------------------


def test_grains_module(ctx: AgentContext) -> None:
    assert grains.items(ctx) == GRAINS and grains.items(ctx) is not ctx.grains
    assert grains.ls(ctx) == sorted(GRAINS)
    assert grains.get(ctx, "os") == "Debian"
    assert grains.get(ctx, "ip4_interfaces:wlan0") == ["192.168.4.23"]
    assert grains.get(ctx, "ip4_interfaces:wlan0:0") == "192.168.4.23"
    assert grains.get(ctx, "roles:name") == "logger"
    assert grains.get(ctx, "nope") == ""
    assert grains.get(ctx, "nope", default=None) is None
    assert grains.get(ctx, "pkg|a:b", delimiter="|") == "colon-key"
    assert grains.item(ctx, "os", "osmajorrelease", "nope") == \
        {"os": "Debian", "osmajorrelease": 12, "nope": ""}
    assert grains.has_value(ctx, "ip4_interfaces:lo") is True
    assert grains.has_value(ctx, "ip4_interfaces:eth0") is False


def test_grains_see_a_refresh(ctx: AgentContext) -> None:
    ctx.grains["os"] = "Raspbian"
    assert run_job(ctx, "grains.get", "os").ret == "Raspbian"
    assert run_job(ctx, "grains.item", "os", "missing", "default=-").ret == \
        {"os": "Raspbian", "missing": "-"}


# --- cmd ----------------------------------------------------------------------------------


def test_cmd_is_off_by_default(ctx: AgentContext, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    result = run_job(ctx, "cmd.run", f"touch {marker}")
    assert (result.retcode, result.success) == (1, False)
    assert result.ret.startswith("ERROR: cmd.run is disabled on this agent")
    assert "cmd_enabled: true" in result.ret
    assert run_job(ctx, "cmd.run_all", "true").ret.startswith("ERROR: cmd.run_all is disabled")
    assert not marker.exists()


def test_cmd_run(shell_ctx: AgentContext, tmp_path: Path) -> None:
    assert run_job(shell_ctx, "cmd.run", "echo hi") == JobResult("hi", 0, True)
    assert run_job(shell_ctx, "cmd.run", "echo out; echo err >&2; exit 3") == \
        JobResult("out\nerr", 3, False)
    assert run_job(shell_ctx, "cmd.run", "pwd", f"cwd={tmp_path}").ret == str(tmp_path)
    assert run_job(shell_ctx, "cmd.run", "cat", "stdin=fed in").ret == "fed in"
    assert run_job(shell_ctx, "cmd.run", ["printf", "%s|", "a b", "$HOME"]).ret == "a b|$HOME|"
    assert run_job(shell_ctx, "cmd.run", "echo $HOME", "python_shell=False").ret == "$HOME"
    assert cmd.run(shell_ctx, "printf 'x  \\n\\n'", rstrip=False).ret == "x  \n\n"


def test_cmd_env_is_used_but_never_logged(shell_ctx: AgentContext) -> None:
    with capture_logs() as logs:
        result = run_job(shell_ctx, "cmd.run", "echo $API_TOKEN hidden-arg-71",
                         {"__kwarg__": True, "env": {"API_TOKEN": "s3cr3t-value"}})
    assert result.ret == "s3cr3t-value hidden-arg-71"
    assert "s3cr3t-value" not in repr(logs) and "hidden-arg-71" not in repr(logs)
    assert {"event": "cmd.started", "fun": "cmd.run", "program": "echo", "cwd": None,
            "log_level": "info"} in logs


def test_cmd_run_all(shell_ctx: AgentContext) -> None:
    result = run_job(shell_ctx, "cmd.run_all", "echo out; echo err >&2; exit 2")
    assert (result.retcode, result.success) == (2, False)
    assert result.ret["stdout"] == "out" and result.ret["stderr"] == "err"
    assert result.ret["retcode"] == 2 and result.ret["pid"] > 0


def test_cmd_timeout_kills_the_command(shell_ctx: AgentContext) -> None:
    done = cmd.run_all(shell_ctx, "sleep 30 & wait", timeout=0.3)
    assert done.retcode == 1
    assert done.ret["stdout"] == "sleep 30 & wait : Timed out after 0.3 seconds"
    # The background sleep dies too; its last exit steps may trail the closing of its pipe.
    deadline = time.monotonic() + 10
    while live_group_members(done.ret["pid"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live_group_members(done.ret["pid"]) == []


def test_job_time_limit_kills_the_command(shell_ctx: AgentContext, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    result = run_job(shell_ctx, "cmd.run", f"echo $$ > {pidfile}; exec sleep 30", timeout=0.3)
    assert result.ret == "ERROR: cmd.run exceeded the job time limit of 0.3 s"
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("command, kwargs, message", [
    ("no-such-program-xyz", {"python_shell": False}, "cmd.run: cannot start the command"),
    ("true", {"cwd": "/no/such/dir"}, "cmd.run: cannot start the command"),
    ("   ", {}, "cmd.run: the command is empty"),
    ([], {}, "cmd.run: cmd must be a string or a non-empty list"),
    ("true", {"env": ["A=1"]}, "cmd.run: env must be a mapping"),
])
def test_cmd_errors(shell_ctx: AgentContext, command: Any, kwargs: dict[str, Any],
                    message: str) -> None:
    with pytest.raises(CommandExecutionError, match=message):
        cmd.run(shell_ctx, command, **kwargs)


def test_shell_exit_status_for_missing_program(shell_ctx: AgentContext) -> None:
    result = run_job(shell_ctx, "cmd.run", "no-such-program-xyz")
    assert result.retcode == 127 and "not found" in result.ret
