"""A stock salt-minion (Salt 3008) shares our master's mine with our agent, both ways."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_master.mine import MineService
from cloud_master.server import Master
from tests.inproc import running_agent, running_master, until
from tests.interop import saltpeer
from tests.master.test_mine_e2e import job, with_mine, with_mine_module

pytestmark = [pytest.mark.salt, pytest.mark.slow]


@pytest.fixture
def salt_venv() -> saltpeer.SaltVenv:
    try:
        return saltpeer.find_salt_venv()
    except saltpeer.SaltPeerUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture
def short_root() -> Iterator[Path]:
    # Salt's IPC socket paths must stay short: pytest's tmp_path can be too long.
    with tempfile.TemporaryDirectory(prefix="mn-", ignore_cleanup_errors=True) as base:
        yield Path(base)


def test_stock_minion_and_our_agent_share_the_mine(salt_venv: saltpeer.SaltVenv,
                                                   short_root: Path) -> None:
    async def scenario() -> None:
        async with running_master(short_root / "m") as master:
            service = with_mine(master, short_root)
            salty = saltpeer.SaltMinion.create(
                salt_venv, short_root / "salty", minion_id="salty",
                master_port=master.opts["ret_port"], publish_port=master.opts["publish_port"])
            public = saltpeer.generate_minion_keys(salty.pki_dir)
            accepted = Path(master.opts["pki_dir"]) / "minions"
            accepted.mkdir(parents=True, exist_ok=True)
            (accepted / "salty").write_text(public)
            # Salt's mine.send and mine.delete hand the load to the running minion daemon.
            await asyncio.to_thread(salty.start)
            try:
                await asyncio.to_thread(salty.wait_ready, 60)
                await share(master, service, salty, short_root)
            finally:
                await asyncio.to_thread(salty.stop)
            service.store.close()

    asyncio.run(scenario())


async def share(master: Master, service: MineService, salty: saltpeer.SaltMinion,
                root: Path) -> None:
    async with running_agent(root / "a", master, "car-a") as car_a:
        with_mine_module(car_a)
        await job(car_a, "mine.send", "greeting", "from car-a",
                  "mine_function=test.echo")
        sent = await asyncio.to_thread(salty.salt_call, "mine.send", "greeting",
                                       "from salty", "mine_function=test.echo")
        assert sent is True
        await until(lambda: "salty" in service.get("*", "greeting"))
        seen_by_salt = await asyncio.to_thread(salty.salt_call, "mine.get", "*",
                                               "greeting")
        assert seen_by_salt == {"car-a": "from car-a", "salty": "from salty"}
        assert await job(car_a, "mine.get", "salty", "greeting") == {
            "salty": "from salty"}
        assert await asyncio.to_thread(salty.salt_call, "mine.delete",
                                       "greeting") is True
        await until(lambda: "salty" not in service.get("*", "greeting"))
        assert service.get("*", "greeting") == {"car-a": "from car-a"}
