"""The dispatcher: wire arguments, binding, outcomes and their Salt texts, concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.dispatch import Dispatcher, JobResult, bind, parse_wire_args
from autopi_agent.minion.errors import ArgumentError, ExecutionError, UnknownFunctionError
from autopi_agent.minion.loader import BUILTIN_MODULES, Loader
from tests.saltvenv import salt_venv

ARGS_ORACLE = Path(__file__).with_name("salt_args_oracle.py")
MODULES = {**BUILTIN_MODULES, "jobs": "tests.agent.jobmods",
           "broken": "tests.agent.no_such_module"}


def make_ctx(**opts: Any) -> AgentContext:
    loader = Loader(MODULES, entry_points=False)
    return AgentContext.create({"id": "car-0001", **opts}, grains={"os": "Debian"},
                               loader=loader)


def job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("job:") and t.is_alive()]


@pytest.fixture
def ctx() -> AgentContext:
    return make_ctx()


def drive(scenario: Callable[[Dispatcher], Awaitable[None]],
          ctx: AgentContext | None = None) -> None:
    """Run ``scenario`` on a fresh dispatcher in its own event loop, then close it."""
    async def main() -> None:
        dispatcher = Dispatcher(ctx or make_ctx())
        try:
            await scenario(dispatcher)
        finally:
            await dispatcher.aclose()

    asyncio.run(main())
    assert job_threads() == []


def call(fun: Any, arg: Any = (), ctx: AgentContext | None = None, **kw: Any) -> JobResult:
    """One job on a fresh dispatcher."""
    results: list[JobResult] = []

    async def scenario(dispatcher: Dispatcher) -> None:
        results.append(await dispatcher.run(fun, list(arg) if isinstance(arg, tuple) else arg,
                                            **kw))

    drive(scenario, ctx)
    return results[0]


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (bounded by the test timeout)."""
    while not condition():
        await asyncio.sleep(0.005)


# --- parse_wire_args ----------------------------------------------------------------------

WIRE_CASES: list[tuple[list[Any], list[Any], dict[str, Any]]] = [
    ([], [], {}),
    (["hi"], ["hi"], {}),
    (["a=1"], [], {"a": 1}),
    (["text=hello world"], [], {"text": "hello world"}),
    (["x={a: 1}"], [], {"x": {"a": 1}}),
    (["x=a: 1"], [], {"x": "a: 1"}),
    (["x=[1, 2]"], [], {"x": [1, 2]}),
    (["x=1,2"], [], {"x": "1,2"}),
    (["n=None", "m=null", "k=~"], [], {"n": None, "m": None, "k": None}),
    (["n="], [], {"n": ""}),
    (["n=2024_01", "d=2024-01-01"], [], {"n": "2024_01", "d": "2024-01-01"}),
    (["t=#tag", "y=yes", "f=3.5", "b=true"], [], {"t": "#tag", "y": True, "f": 3.5, "b": True}),
    (["g=!", "h=|"], [], {"g": "!", "h": "|"}),
    (["a==b", "1a=b", "=x"], ["a==b", "1a=b", "=x"], {}),
    (["foo-bar=1", "a.b=2", "_c=3"], [], {"foo-bar": 1, "a.b": 2, "_c": 3}),
    (["a=b\nc"], ["a=b\nc"], {}),
    ([{"__kwarg__": True, "x": 1, "y": "z=1"}], [], {"x": 1, "y": "z=1"}),
    ([{"x": 1}], [{"x": 1}], {}),
    ([{"__kwarg__": "yes", "x": 1}], [{"x": 1}], {}),
    ([42, None, [1], 2.5, True], [42, None, [1], 2.5, True], {}),
    (["1", "x=1", "2", {"__kwarg__": True, "x": 5}], ["1", "2"], {"x": 5}),
]


@pytest.mark.parametrize("wire, args, kwargs", WIRE_CASES)
def test_parse_wire_args(wire: list[Any], args: list[Any], kwargs: dict[str, Any]) -> None:
    assert parse_wire_args(wire) == (args, kwargs)


def test_parse_wire_args_leaves_its_input_alone() -> None:
    wire = [{"__kwarg__": True, "x": 1}, "a=1"]
    parse_wire_args(wire)
    assert wire == [{"__kwarg__": True, "x": 1}, "a=1"]


@pytest.mark.parametrize("wire", ["test.ping", b"x", 42, {"a": 1}])
def test_parse_wire_args_wants_a_list(wire: Any) -> None:
    with pytest.raises(ArgumentError, match="must be a list"):
        parse_wire_args(wire)


@pytest.mark.salt
def test_parse_wire_args_agrees_with_salt_minion() -> None:
    wires = [wire for wire, _, _ in WIRE_CASES]
    proc = subprocess.run([str(salt_venv() / "bin" / "python"), str(ARGS_ORACLE)],
                          input=json.dumps(wires), capture_output=True, text=True,
                          timeout=90, check=True)
    salt_says = [tuple(pair) for pair in json.loads(proc.stdout)]
    ours = [list(parse_wire_args(wire)) for wire in wires]
    assert [list(pair) for pair in salt_says] == json.loads(json.dumps(ours))


# --- bind ---------------------------------------------------------------------------------


def test_bind_fits_arguments_to_the_signature(ctx: AgentContext) -> None:
    bound = bind(ctx.loader.function("grains.get"), ["os"], {"delimiter": "|"})
    assert bound.args == ("os",) and bound.kwargs == {"delimiter": "|"}
    bound = bind(ctx.loader.function("test.arg"), [1, 2], {"anything": 3})
    assert bound.args == (1, 2) and bound.kwargs == {"anything": 3}


@pytest.mark.parametrize("fun, args, kwargs, first_line", [
    ("test.echo", [], {},
     "Passed invalid arguments to test.echo: missing a required argument: 'text'"),
    ("test.echo", ["a", "b"], {}, "Passed invalid arguments to test.echo: too many positional "
     "arguments"),
    ("test.echo", ["a"], {"text": "b"},
     "Passed invalid arguments to test.echo: multiple values for argument 'text'"),
    ("test.echo", ["hi"], {"bogus": 1, "other": "x"}, "ERROR executing 'test.echo': The "
     "following keyword arguments are not valid: bogus=1, other=x"),
])
def test_bind_errors_name_function_problem_and_usage(ctx: AgentContext, fun: str,
                                                     args: list[Any], kwargs: dict[str, Any],
                                                     first_line: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        bind(ctx.loader.function(fun), args, kwargs)
    lines = str(caught.value).splitlines()
    assert lines[0] == first_line
    assert lines[1] == "Usage: test.echo(text)"


def test_bind_hides_ctx(ctx: AgentContext) -> None:
    function = ctx.loader.function("grains.get")
    assert function.wants_ctx
    assert function.usage == "grains.get(key, default='', delimiter=':')"
    with pytest.raises(ArgumentError):
        bind(function, [], {"ctx": 1, "key": "os"})


# --- outcomes -----------------------------------------------------------------------------


def test_success() -> None:
    assert call("test.ping", []) == JobResult(True, 0, True)
    assert call("test.echo", ["hi"]) == JobResult("hi", 0, True)
    assert call("test.echo", [{"__kwarg__": True, "text": "kw"}]) == JobResult("kw", 0, True)
    assert call("test.arg", ["1", "n=2"]).ret == {"args": ["1"], "kwargs": {"n": 2}}


def test_context_is_injected_and_modules_call_each_other() -> None:
    assert call("jobs.ctx_id").ret == "car-0001"
    assert call("jobs.call_other", ["os"]).ret == "Debian"


def test_async_function_is_awaited() -> None:
    assert call("jobs.async_echo", ["hi"]) == JobResult("hi", 0, True)


@pytest.mark.parametrize("fun", ["test.nope", "nomod.fun", "test", "", "test.", ".ping",
                                 "jobs.NOT_A_FUNCTION", "jobs.__name__", "jobs.exit_"])
def test_unknown_function_gives_salts_text(fun: str) -> None:
    result = call(fun)
    assert (result.retcode, result.success) == (1, False)
    text = result.ret[fun] if isinstance(result.ret, dict) else result.ret
    assert text == f"'{fun}' is not available."


def test_unknown_function_lists_the_docs_it_prefixes() -> None:
    result = call("test.pin")
    assert result.retcode == 1
    assert result.ret["test.pin"] == "'test.pin' is not available."
    assert "test.ping" in result.ret and "Not an ICMP ping" in result.ret["test.ping"]


def test_broken_module_is_reported_and_spares_the_others() -> None:
    ctx = make_ctx()
    result = call("broken.fun", ctx=ctx)
    assert result.retcode == 1
    assert result.ret.startswith("'broken.fun' is not available. Possible reasons: ")
    assert "ModuleNotFoundError" in result.ret
    assert call("test.ping", ctx=ctx).ret is True


def test_bad_arguments_do_not_run_the_function(ctx: AgentContext) -> None:
    result = call("jobs.record", ["a", "b"], ctx)
    assert (result.retcode, result.success) == (1, False)
    assert result.ret.startswith("Passed invalid arguments to jobs.record: too many")
    assert "Usage: jobs.record(value)" in result.ret
    result = call("jobs.record", ["a", "bogus=1"], ctx)
    assert result.ret.startswith("ERROR executing 'jobs.record': The following keyword")
    assert "calls" not in ctx.services
    assert call("jobs.record", ["ok"], ctx).ret == "ok"
    assert ctx.services["calls"] == ["ok"]


def test_malformed_arg_list() -> None:
    result = call("test.ping", "not-a-list")
    assert result.retcode == 1 and "must be a list" in result.ret


def test_exception_names_type_and_text() -> None:
    assert call("test.exception", ["boom"]) == JobResult(
        "The minion function caused an exception: Exception: boom", 1, False)


def test_system_exit_in_a_module_is_an_error() -> None:
    result = call("jobs.exit")
    assert result.retcode == 1
    assert result.ret == "The minion function caused an exception: RuntimeError: SystemExit: 3"


def test_command_execution_error_sets_retcode() -> None:
    assert call("jobs.command_error", [7]) == JobResult("ERROR: adapter unplugged", 7, False)


def test_module_may_set_retcode() -> None:
    assert call("test.retcode", [5]) == JobResult(True, 5, False)
    assert call("test.retcode", [0]) == JobResult(True, 0, True)


def test_failed_result_dict_fails_the_job() -> None:
    assert call("jobs.fail_dict") == JobResult({"result": False, "comment": "nope"}, 1, False)


def test_dispatcher_never_raises() -> None:
    result = call(123)
    assert result.retcode == 1 and result.success is False
    assert call(None, None).retcode == 1


def test_job_result_is_a_frozen_value() -> None:
    result = JobResult.of("x", 0)
    assert result.success
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.retcode = 1  # type: ignore[misc]


# --- time limits and concurrency ----------------------------------------------------------


def test_sync_job_over_its_time_limit() -> None:
    async def scenario(dispatcher: Dispatcher) -> None:
        result = await dispatcher.run("test.sleep", [30], timeout=0.2)
        assert result == JobResult("ERROR: test.sleep exceeded the job time limit of 0.2 s",
                                   1, False)
        await until(lambda: job_threads() == [])  # the sleep noticed the cancel and ended

    drive(scenario)


def test_async_job_over_its_time_limit() -> None:
    assert call("jobs.async_sleep", [30], timeout=0.1) == JobResult(
        "ERROR: jobs.async_sleep exceeded the job time limit of 0.1 s", 1, False)


def test_time_limit_defaults_to_job_timeout_option() -> None:
    result = call("test.sleep", [30], make_ctx(job_timeout=0.25))
    assert result.ret == "ERROR: test.sleep exceeded the job time limit of 0.25 s"


def test_slow_job_does_not_delay_ping() -> None:
    async def scenario(dispatcher: Dispatcher) -> None:
        sleeper = asyncio.create_task(dispatcher.run("test.sleep", [30]))
        await until(lambda: dispatcher.running() == ["test.sleep"])
        assert await dispatcher.run("test.ping", []) == JobResult(True, 0, True)
        assert not sleeper.done()
        await dispatcher.aclose()
        result = await sleeper
        assert result.retcode == 1
        assert result.ret == "ERROR: test.sleep was cancelled: the agent is shutting down"

    drive(scenario)


def test_jobs_run_concurrently(ctx: AgentContext) -> None:
    ctx.services.update(first=threading.Event(), second=threading.Event())

    async def scenario(dispatcher: Dispatcher) -> None:
        first = asyncio.create_task(dispatcher.run("jobs.gate", ["first"]))
        second = asyncio.create_task(dispatcher.run("jobs.gate", ["second"]))
        await until(lambda: len(dispatcher.running()) == 2)
        ctx.services["second"].set()
        assert (await second).ret == "second released"
        assert not first.done()
        ctx.services["first"].set()
        assert (await first).ret == "first released"
        assert dispatcher.running() == []

    drive(scenario, ctx)


def test_cancelling_the_caller_cancels_the_job() -> None:
    async def scenario(dispatcher: Dispatcher) -> None:
        task = asyncio.create_task(dispatcher.run("test.sleep", [30]))
        await until(lambda: dispatcher.running() == ["test.sleep"])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: job_threads() == [])
        assert dispatcher.running() == []

    drive(scenario)


# --- the loader ---------------------------------------------------------------------------


def test_loader_errors_are_typed(ctx: AgentContext) -> None:
    with pytest.raises(UnknownFunctionError) as caught:
        ctx.loader.function("test.nope")
    assert isinstance(caught.value, ExecutionError) and isinstance(caught.value, LookupError)
    assert caught.value.function == "test.nope"


def test_loader_lists_what_loads(ctx: AgentContext) -> None:
    assert ctx.loader.list_modules() == sorted({*BUILTIN_MODULES, "jobs"})
    assert "broken" in ctx.loader.unavailable()
    assert "broken" in ctx.loader.known_modules()
    assert ctx.loader.list_functions("jobs.a*") == ["jobs.async_echo", "jobs.async_sleep"]
    assert "jobs.exit" in ctx.loader.list_functions("jobs")
    assert ctx.loader.list_functions("job") == []


def test_loader_instances_are_independent() -> None:
    only_test = Loader({"test": BUILTIN_MODULES["test"]}, entry_points=False)
    assert only_test.list_modules() == ["test"]
    with pytest.raises(UnknownFunctionError):
        only_test.function("sys.doc")
    assert Loader(entry_points=False).function("sys.doc").name == "sys.doc"


def test_module_that_raises_on_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exploding_mod.py").write_text("raise RuntimeError('no adapter library')\n")
    (tmp_path / "no_all_mod.py").write_text("def hello():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loader = Loader({"boom": "exploding_mod", "noall": "no_all_mod",
                     "test": BUILTIN_MODULES["test"]}, entry_points=False)
    assert loader.list_modules() == ["test"]
    reasons = loader.unavailable()
    assert "RuntimeError: no adapter library" in reasons["boom"]
    assert "__all__" in reasons["noall"]
    with pytest.raises(UnknownFunctionError, match="Possible reasons"):
        loader.function("boom.anything")


def test_entry_point_modules_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "car_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: car-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[autopi_agent.modules]\nplug = car_plugin_mod\ntest = car_plugin_mod\n")
    (tmp_path / "car_plugin_mod.py").write_text(
        "__all__ = ['hello']\n\ndef hello(name):\n    'Greet.'\n    return f'hello {name}'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loader = Loader()
    assert loader.function("plug.hello").callable("car") == "hello car"
    assert "plug" in loader.list_modules()
    assert loader.function("test.ping").callable.__module__ == "autopi_agent.modules.test"
    assert "plug" not in Loader(entry_points=False).list_modules()


def test_context_calls_other_functions(ctx: AgentContext) -> None:
    assert ctx.call("grains.get", "os") == "Debian"
    assert ctx.call("test.echo", text="x") == "x"
    with pytest.raises(UnknownFunctionError):
        ctx.call("test.nope")
    with pytest.raises(ExecutionError, match="asynchronous"):
        ctx.call("jobs.async_echo", "x")
    assert asyncio.run(ctx.acall("jobs.async_echo", "a")) == "a"
    assert asyncio.run(ctx.acall("grains.get", "os")) == "Debian"


def test_context_options() -> None:
    assert make_ctx().job_timeout == 300.0 and make_ctx().cmd_enabled is False
    assert make_ctx(job_timeout=0).job_timeout is None
    assert make_ctx(cmd_enabled=True).cmd_enabled is True
    assert AgentContext.create({"id": "x"}).loader.function("test.ping").name == "test.ping"
