"""Factory provisioning: a key whose fingerprint is on the allow-list is accepted at once;
the same id with another key is not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from autopi_agent.keys import MinionKeys
from tests.inproc import running_agent, running_master, until


def test_preseeded_key_accepted_other_key_pending(tmp_path: Path) -> None:
    good = MinionKeys.load_or_create(tmp_path / "good" / "pki" / "minion")
    allow = tmp_path / "preseed.yaml"
    allow.write_text(yaml.safe_dump({"car-good": good.fingerprint(), "car-bad": good.fingerprint()}))

    async def scenario() -> None:
        async with running_master(tmp_path / "m", preseed_keys_file=str(allow)) as master:
            async with running_agent(tmp_path / "good", master, "car-good", accept=False) as agent:
                await asyncio.wait_for(agent.ready.wait(), 10)
                assert "car-good" in master.keys.list()["accepted"]
            # car-bad presents a key of its own, not the one on the list: it waits as pending.
            async with running_agent(tmp_path / "bad", master, "car-bad", accept=False) as agent:
                await until(lambda: "car-bad" in master.keys.list().get("pending", []))
                assert not agent.ready.is_set()
    asyncio.run(scenario())
