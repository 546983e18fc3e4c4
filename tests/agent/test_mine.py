"""The agent's mine: mine_functions parsing, the periodic updater, the module without a master."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.errors import CommandExecutionError
from autopi_agent.minion.loader import BUILTIN_MODULES, Loader
from autopi_agent.minion.mine import (
    ACL_DATA,
    ACL_ID,
    MineFunction,
    MineUpdater,
    check_mine_functions,
    parse_mine_functions,
    wrap_acl,
)

MODULES = {**BUILTIN_MODULES, "mine": "autopi_agent.modules.mine"}


def make_ctx(**opts: Any) -> AgentContext:
    return AgentContext.create({"id": "car-0001", **opts}, grains={"os": "Debian"},
                               loader=Loader(MODULES, entry_points=False))


def test_salt_shapes_of_mine_functions() -> None:
    entries = parse_mine_functions({
        "network.ip_addrs": [],
        "obd_vin": {"mine_function": "obd.vin"},
        "eth0": ["eth0", {"cidr": "10.0.0.0/8"}, {"mine_function": "network.ip_addrs"}],
        "secret": {"mine_function": "test.echo", "text": "x", "allow_tgt": "car-*",
                   "allow_tgt_type": "glob"},
    })
    assert entries == [
        MineFunction("network.ip_addrs", "network.ip_addrs"),
        MineFunction("obd_vin", "obd.vin"),
        MineFunction("eth0", "network.ip_addrs", ("eth0",), {"cidr": "10.0.0.0/8"}),
        MineFunction("secret", "test.echo", (), {"text": "x"}, "car-*", "glob"),
    ]
    assert parse_mine_functions(["test.ping"]) == [MineFunction("test.ping", "test.ping")]
    assert parse_mine_functions(None) == []


def test_bad_mine_functions_are_refused() -> None:
    with pytest.raises(ValueError, match="mine_functions.x"):
        parse_mine_functions({"x": 3})
    assert check_mine_functions("nonsense") is not None
    assert check_mine_functions({"grains.items": []}) is None


def test_acl_wrapping_matches_salts_marker() -> None:
    plain = MineFunction("a", "test.ping")
    assert wrap_acl(plain, 1) == 1
    limited = MineFunction("a", "test.ping", allow_tgt="car-*")
    assert wrap_acl(limited, 1) == {ACL_DATA: 1, ACL_ID: 1, "allow_tgt": "car-*"}


def test_updater_runs_at_start_and_keeps_going_after_a_failure() -> None:
    calls: list[str] = []

    async def run(fun: str, arg: Sequence[Any]) -> Any:
        calls.append(fun)
        if len(calls) == 1:
            raise RuntimeError("master down")
        return True

    async def main() -> None:
        updater = MineUpdater(run, interval_minutes=0.0001)  # 6 ms
        updater.start()
        while len(calls) < 3:
            await asyncio.sleep(0.005)
        await updater.stop()

    asyncio.run(main())
    assert calls[:3] == ["mine.update"] * 3


def test_updater_off_with_zero_interval() -> None:
    async def run(fun: str, arg: Sequence[Any]) -> Any:
        raise AssertionError("must not run")

    async def main() -> None:
        updater = MineUpdater(run, 0)
        updater.start()
        await updater.stop()
        assert await updater.update_now() is None  # the failure is logged, not raised

    asyncio.run(main())


def test_module_needs_a_master() -> None:
    ctx = make_ctx(mine_functions={"test.ping": []})
    with pytest.raises(CommandExecutionError, match="needs a master"):
        ctx.call("mine.get", "*", "test.ping")
    with pytest.raises(CommandExecutionError, match="needs a master"):
        ctx.call("mine.update")


def test_update_sends_configured_and_pillar_functions() -> None:
    sent: list[dict[str, Any]] = []

    def master_call(load: dict[str, Any], private: str | None = None,
                    timeout: float = 60) -> Any:
        sent.append(load)
        return True

    ctx = make_ctx(mine_functions={"test.ping": [], "greeting": ["hi", {
        "mine_function": "test.echo"}], "broken": {"mine_function": "test.exception"}})
    ctx.services["master_call"] = master_call
    ctx.services["pillar"] = {"mine_functions": {"os": {"mine_function": "grains.get",
                                                         "key": "os"}}}
    assert ctx.call("mine.update") is True
    assert sent == [{"cmd": "_mine", "id": "car-0001", "clear": False,
                     "data": {"test.ping": True, "greeting": "hi", "os": "Debian"}}]
    assert ctx.call("mine.valid")["greeting"] == {"test.echo": ["hi"]}


def test_update_with_nothing_configured_sends_nothing() -> None:
    ctx = make_ctx()
    ctx.services["master_call"] = lambda *a: pytest.fail("nothing to send")
    assert ctx.call("mine.update") is None
