"""Our agent applying states from our master: files over 4506 cached by hash, pillar delivered
to each agent alone (S4), results back as a job return with Salt's retcode."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from autopi_agent.minion.loader import Loader
from autopi_agent.state.sources import PILLAR_CACHE
from cloud_master.server import Master
from tests.inproc import running_agent, running_master, until
from tests.state.conftest import STATE_MODULES
from tests.state.masterhooks import serve_states
from tests.state.test_service_pkg import write_tree


def trees(tmp_path: Path) -> tuple[Path, Path]:
    srv = write_tree(tmp_path / "srv", {
        "top.sls": "base:\n  '*':\n    - agent\n",
        "agent/init.sls": f"""
{tmp_path}/out/{{{{ grains['id'] }}}}.conf:
  file.managed:
    - source: salt://agent/agent.conf.j2
    - template: jinja
    - makedirs: True
""".replace("{{{{", "{{").replace("}}}}", "}}"),
        "agent/agent.conf.j2": "id={{ grains['id'] }} secret={{ pillar['secret'] }}\n",
    })
    pillar = write_tree(tmp_path / "pillar", {
        "top.sls": "base:\n  'car-a':\n    - a\n  'car-b':\n    - b\n",
        "a.sls": "secret: alpha\n", "b.sls": "secret: bravo\n"})
    return srv, pillar


async def job(master: Master, fun: str, arg: list[Any], tgt: str) -> Any:
    jid, _ = await master.publish(fun, arg, tgt)
    await until(lambda: (r := master.jobcache.get_job(jid)) and r.returns, timeout=30)
    record = master.jobcache.get_job(jid)
    assert record is not None
    return record.returns[tgt]


def test_agents_apply_states_from_master_with_their_own_pillar(tmp_path: Path) -> None:
    srv, pillar = trees(tmp_path)
    out = tmp_path / "out"

    async def scenario() -> None:
        async with running_master(tmp_path / "m", file_roots={"base": [str(srv)]},
                                  pillar_roots={"base": [str(pillar)]}) as master:
            serve_states(master)
            async with running_agent(tmp_path / "a", master, "car-a") as car_a, \
                    running_agent(tmp_path / "b", master, "car-b") as car_b:
                for agent in (car_a, car_b):
                    agent.context.loader = Loader(STATE_MODULES, entry_points=False)
                dry = await job(master, "state.apply", ["test=True"], "car-a")
                assert dry.retcode == 0 and not out.exists()
                first = await job(master, "state.apply", [], "car-a")
                assert first.retcode == 0, first.ret
                (result,) = first.ret.values()
                assert result["changes"]["diff"] == "New file" and result["__run_num__"] == 0
                await job(master, "state.apply", [], "car-b")
                assert (out / "car-a.conf").read_text() == "id=car-a secret=alpha\n"
                assert (out / "car-b.conf").read_text() == "id=car-b secret=bravo\n"
                again = await job(master, "state.apply", [], "car-a")
                assert all(not r["changes"] for r in again.ret.values())
                # S4: each agent holds its own pillar and nothing of the other's.
                items = await job(master, "pillar.items", ["unmask=True"], "car-b")
                assert items.ret == {"secret": "bravo"}
                items = await job(master, "pillar.items", ["unmask=True"], "car-a")
                assert items.ret == {"secret": "alpha"}
                assert (tmp_path / "a" / "cache" / PILLAR_CACHE).exists()
                cached = tmp_path / "a" / "cache" / "files" / "base" / "agent" / "agent.conf.j2"
                assert cached.read_text().startswith("id={{")
                missing = await job(master, "state.sls", ["nosuch"], "car-a")
                assert missing.retcode == 1
                assert missing.ret == ["No matching sls found for 'nosuch' in env 'base'"]

    asyncio.run(scenario())
