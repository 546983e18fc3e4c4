"""event.send from a job reaches the master's bus (jobs can talk to the master)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.inproc import running_agent, running_master, until


def test_event_send_reaches_master_bus(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master, \
                running_agent(tmp_path / "a", master, "car-a"):
            sub = master.events.subscribe("vehicle/*")
            try:
                jid, _ = await master.publish("event.send", ["vehicle/car-a/hello",
                                                            {"__kwarg__": True, "data": {"n": 1}}])
                event = await asyncio.wait_for(sub.get(), 10)
                assert event.tag == "vehicle/car-a/hello"
                assert event.data["n"] == 1 and event.data["id"] == "car-a"
                await until(lambda: (r := master.jobcache.get_job(jid)) and r.returns)
                record = master.jobcache.get_job(jid)
                assert record is not None and record.returns["car-a"].ret is True
            finally:
                sub.close()
    asyncio.run(scenario())
