"""Offline highstate: an agent whose master served the files once runs state.apply from its
cache (files and pillar) when the master is gone, and says so in each result."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.dispatch import JobResult
from autopi_agent.minion.errors import CommandExecutionError
from autopi_agent.minion.loader import Loader
from autopi_agent.modules import state as state_mod
from autopi_agent.state.session import OFFLINE_WARNING
from cloud_master.server import Master
from tests.inproc import running_agent, running_master
from tests.state.conftest import STATE_MODULES
from tests.state.masterhooks import serve_states
from tests.state.test_remote import job
from tests.state.test_service_pkg import write_tree


def trees(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "out"
    srv = write_tree(tmp_path / "srv", {
        "top.sls": "base:\n  '*':\n    - car\n",
        "car/init.sls": f"""
{out}/car.conf:
  file.managed:
    - source: salt://car/car.conf.j2
    - template: jinja
    - makedirs: True
engine:
  obd.logger:
    - pids: [RPM]
    - interval: {{{{ pillar['every'] }}}}
""".replace("{{{{", "{{").replace("}}}}", "}}"),
        "car/car.conf.j2": "vin={{ pillar['vin'] }}\n",
    })
    pillar = write_tree(tmp_path / "pillar", {"top.sls": "base:\n  '*':\n    - car\n",
                                              "car.sls": "vin: WVWZZZ1KZAW000001\nevery: 2\n"})
    return srv, pillar


async def apply_here(ctx: AgentContext) -> JobResult:
    return await asyncio.to_thread(lambda: state_mod.apply_(ctx))  # type: ignore[arg-type]


def test_highstate_runs_from_the_cache_when_the_master_is_gone(tmp_path: Path) -> None:
    srv, pillar = trees(tmp_path)
    out = tmp_path / "out" / "car.conf"

    async def scenario() -> None:
        dead: Master
        async with running_master(tmp_path / "m", file_roots={"base": [str(srv)]},
                                  pillar_roots={"base": [str(pillar)]}) as master:
            serve_states(master)
            dead = master
            async with running_agent(tmp_path / "car", master, "car-a") as car:
                car.context.loader = Loader(STATE_MODULES, entry_points=False)
                online = await job(master, "state.apply", [], "car-a")
                assert online.retcode == 0, online.ret
                assert all("warnings" not in result for result in online.ret.values())
        out.unlink()
        # The car starts again in a garage: the master is gone (its ports are closed).
        async with running_agent(tmp_path / "car", dead, "car-a", accept=False) as car:
            car.context.loader = Loader(STATE_MODULES, entry_points=False)
            offline = await apply_here(car.context)
            assert offline.retcode == 0, offline.ret
            results = list(offline.ret.values())
            assert [r["warnings"] for r in results] == [[OFFLINE_WARNING]] * 2
            assert out.read_text() == "vin=WVWZZZ1KZAW000001\n"  # the cached pillar
            again = await apply_here(car.context)
            assert all(not result["changes"] for result in again.ret.values())

    asyncio.run(scenario())


def test_a_local_call_without_roots_uses_the_cache(tmp_path: Path) -> None:
    cachedir = tmp_path / "cache"
    out = tmp_path / "hello.txt"
    write_tree(cachedir / "files" / "base", {
        "top.sls": "base:\n  '*':\n    - hello\n",
        "hello.sls": f"{out}:\n  file.managed:\n    - contents: hi\n"})
    ctx = AgentContext.create({"id": "car-0001", "cachedir": str(cachedir)},
                              loader=Loader(STATE_MODULES, entry_points=False))
    ret = state_mod.apply_(ctx)
    assert ret.retcode == 0, ret.ret
    (result,) = ret.ret.values()
    assert result["warnings"] == [OFFLINE_WARNING] and out.read_text() == "hi\n"


def test_no_master_no_cache_is_a_clear_error(tmp_path: Path) -> None:
    ctx = AgentContext.create({"id": "car-0001", "cachedir": str(tmp_path / "cache")},
                              loader=Loader(STATE_MODULES, entry_points=False))
    with pytest.raises(CommandExecutionError, match="no state files: this agent has no master"):
        state_mod.apply_(ctx)
