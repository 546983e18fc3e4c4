"""R1 end to end: spooled returns, events and telemetry reach the master once acknowledged,
and survive the master being away."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.inproc import running_agent, running_master, until


def test_telemetry_batches_stored_once_and_events_fired(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master, \
                running_agent(tmp_path / "a", master, "car-a") as agent:
            sub = master.events.subscribe("vehicle/car-a/telemetry")
            now = time.time()
            samples = [{"ts": now + i, "series": "obd.RPM", "value": 800.0 + i, "unit": "rpm"}
                       for i in range(1200)]
            await asyncio.to_thread(agent.spool.put_many, "telemetry", samples)
            agent.sender.nudge()
            await until(lambda: master.telemetry.store.count() == 1200, timeout=20)
            event = await asyncio.wait_for(sub.get(), 5)
            assert event.data["series"] == ["obd.RPM"]
            # The agent deletes a batch once the master's reply is in (just after it stored it).
            await until(lambda: agent.spool.stats().total_count == 0, timeout=10)
            assert master.telemetry.store.count() == 1200
            rows = list(master.telemetry.store.query("car-a", ["obd.RPM"]))
            assert [r.value for r in rows[:3]] == [800.0, 801.0, 802.0]
            # A resend of the same ids (say, after a lost ack) is not stored twice.
            resend = [{"uid": r.uid, "ts": r.ts, "series": r.series, "value": r.value,
                       "unit": r.unit} for r in rows[:10]]
            reply = await agent.link.request({"cmd": "_telemetry", "id": "car-a",
                                              "samples": resend})
            assert reply == {"stored": 0, "duplicates": 10, "rejected": 0}
            assert master.telemetry.store.count() == 1200
            sub.close()
    asyncio.run(scenario())


def test_return_waits_in_spool_while_master_is_away(tmp_path: Path) -> None:
    async def scenario() -> None:
        master_root = tmp_path / "m"
        async with running_master(master_root) as master:
            opts = dict(master.opts)
        async with running_master(master_root, ret_port=opts["ret_port"],
                                  publish_port=opts["publish_port"]) as master:
            async with running_agent(tmp_path / "a", master, "car-a",
                                     return_timeout=1) as agent:
                jid, _ = await master.publish("test.sleep", [1])
                master.stop()  # the master goes away while the job runs
                await until(lambda: agent.spool.stats().count.get("return", 0) == 1, timeout=10)
        # Same master state and ports, back after the job finished.
        async with running_master(master_root, ret_port=opts["ret_port"],
                                  publish_port=opts["publish_port"]) as master:
            async with running_agent(tmp_path / "a", master, "car-a", accept=False) as agent:
                await until(lambda: (r := master.jobcache.get_job(jid)) and r.returns, timeout=30)
                # Removed from the spool once the master acknowledged it.
                await until(lambda: agent.spool.stats().count.get("return", 0) == 0, timeout=10)
    asyncio.run(scenario())
