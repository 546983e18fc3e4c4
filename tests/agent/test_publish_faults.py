"""S3 and the master key rules: forged, tampered and replayed publishes are refused and logged;
a rotated shared key is picked up by re-authenticating; a master key that is not the pinned
or cached one is never trusted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import zmq
import zmq.asyncio
from structlog.testing import capture_logs

from autopi_proto import messages, rsa
from autopi_proto.jid import gen_jid
from cloud_master.server import Master
from tests.inproc import running_agent, running_master, until


async def observe_publish(master: Master, fun: str) -> tuple[str, bytes]:
    """Publish ``fun`` to everyone and capture the frame as it went out on 4505."""
    sub = zmq.asyncio.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{master.opts['publish_port']}")
    await asyncio.sleep(0.3)  # let the subscription reach the publisher
    jid, _ = await master.publish(fun, [])
    frame = (await asyncio.wait_for(sub.recv_multipart(), 5))[-1]
    sub.close(0)
    return jid, frame


def events(logs: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [e for e in logs if e.get("event") == name]


def test_replayed_publish_runs_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master, \
                running_agent(tmp_path / "a", master, "car-a"):
            with capture_logs() as logs:
                jid, frame = await observe_publish(master, "test.ping")
                await until(lambda: (r := master.jobcache.get_job(jid)) and r.returns)
                assert master.pub is not None
                await master.pub.send(frame)
                await until(lambda: events(logs, "publish.replayed"))
            assert len(events(logs, "publish.received")) == 1
    asyncio.run(scenario())


def test_forged_and_tampered_publishes_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master, \
                running_agent(tmp_path / "a", master, "car-a"):
            assert master.pub is not None
            other = rsa.generate_private_key()
            job = messages.Publish("test.echo", ["forged"], "*", "glob", gen_jid())
            with capture_logs() as logs:
                forged = messages.publish_frame(job, aes=master.shared.crypticle, serial=10**6,
                                                master_key=other)
                await master.pub.send(forged)
                await until(lambda: events(logs, "publish.forged"))
                _, genuine = await observe_publish(master, "test.ping")
                tampered = bytearray(genuine)
                tampered[-300] ^= 0x01
                await master.pub.send(bytes(tampered))
                await until(lambda: len(events(logs, "publish.forged")) +
                            len(events(logs, "publish.malformed")) >= 2)
            received = [e for e in events(logs, "publish.received") if e.get("fun") == "test.echo"]
            assert received == []
    asyncio.run(scenario())


def test_rotated_shared_key_reauthenticates(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master, \
                running_agent(tmp_path / "a", master, "car-a"):
            with capture_logs() as logs:
                master.rotate("test")
                jid, _ = await master.publish("test.echo", ["after rotation"])
                await until(lambda: (r := master.jobcache.get_job(jid)) and r.returns)
            assert events(logs, "auth.renew")
            record = master.jobcache.get_job(jid)
            assert record is not None and record.returns["car-a"].ret == "after rotation"
    asyncio.run(scenario())


def test_pinned_master_finger_mismatch_never_trusted(tmp_path: Path) -> None:
    async def scenario() -> None:
        wrong = ":".join(["ab"] * 32)
        async with running_master(tmp_path) as master:
            with capture_logs() as logs:
                async with running_agent(tmp_path / "a", master, "car-a", accept=False,
                                         master_finger=wrong) as agent:
                    await until(lambda: "car-a" in master.keys.list().get("pending", []))
                    master.keys.accept("car-a")
                    await until(lambda: events(logs, "auth.master_rejected"))
                    assert not agent.ready.is_set()
                    assert not (Path(agent.opts["pki_dir"]) / "minion_master.pub").exists()
    asyncio.run(scenario())


def test_cached_master_key_never_silently_replaced(tmp_path: Path) -> None:
    async def scenario() -> None:
        agent_root = tmp_path / "agent"
        async with running_master(tmp_path / "m1") as first:
            async with running_agent(agent_root, first, "car-a"):
                pass
        cached = (agent_root / "pki" / "minion" / "minion_master.pub").read_text()
        async with running_master(tmp_path / "m2") as impostor:  # another master key
            with capture_logs() as logs:
                async with running_agent(agent_root, impostor, "car-a", accept=False) as agent:
                    await until(lambda: "car-a" in impostor.keys.list().get("pending", []))
                    impostor.keys.accept("car-a")
                    await until(lambda: events(logs, "auth.master_rejected"))
                    assert not agent.ready.is_set()
        assert (agent_root / "pki" / "minion" / "minion_master.pub").read_text() == cached
    asyncio.run(scenario())
