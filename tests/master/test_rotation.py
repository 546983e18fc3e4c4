"""The shared key is renewed every publish_session; agents follow by re-authenticating."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.inproc import running_agent, running_master, until


def test_shared_key_rotates_on_timer_and_agents_follow(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path, publish_session=1, loop_interval=0.5) as master, \
                running_agent(tmp_path / "a", master, "car-a") as agent:
            first = master.shared.crypticle.key_string
            await until(lambda: master.shared.crypticle.key_string != first, timeout=10)
            jid, _ = await master.publish("test.echo", ["rotated"])
            await until(lambda: (r := master.jobcache.get_job(jid)) and r.returns, timeout=15)
            assert agent.link.aes is not None
            assert agent.link.aes.key_string == master.shared.crypticle.key_string
    asyncio.run(scenario())
