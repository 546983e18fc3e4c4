"""S1, S2, S6: bad, truncated, oversized, impersonating and unauthorised requests are refused,
logged, and the next good request is served."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgpack
import zmq
import zmq.asyncio
from structlog.testing import capture_logs

from autopi_proto import codec, messages, rsa
from autopi_proto.crypticle import Crypticle
from cloud_master.server import Master
from tests.inproc import running_agent, running_master


async def raw_request(master: Master, frame: bytes, timeout: float = 3.0) -> Any:
    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{master.opts['ret_port']}")
    try:
        await sock.send_multipart([b"", frame])
        if not await sock.poll(int(timeout * 1000)):
            return TimeoutError
        return codec.unpackb((await sock.recv_multipart())[-1])
    finally:
        sock.close(0)


async def good_auth(master: Master) -> Any:
    """A new minion authenticating: answered "pending" by a healthy master."""
    minion_id = f"probe-{messages.new_nonce()[:8]}"
    key = rsa.generate_private_key()
    req = messages.AuthRequest(minion_id, rsa.clean_pem(rsa.public_pem(key)), messages.new_nonce())
    reply = await raw_request(master, codec.packb(messages.auth_request(req)))
    return messages.parse_auth_reply(reply, req, key, None).status


BAD_FRAMES = {
    "garbage": b"\x00\xffnot msgpack at all\xc1",
    "truncated": codec.packb({"enc": "clear", "load": {"cmd": "_auth", "id": "x" * 50}})[:-7],
    "wrong types": codec.packb({"enc": "aes", "load": 5, "id": ["a"]}),
    "not a map": codec.packb([1, 2, 3]),
    "clear non-auth": codec.packb({"enc": "clear", "load": {"cmd": "_return", "id": "x"}}),
    "aes without session": codec.packb({"enc": "aes", "load": b"x" * 80, "id": "ghost",
                                        "version": 3}),
    "path in id": codec.packb({"enc": "clear", "load": {"cmd": "_auth", "id": "../../etc",
                                                         "pub": "x", "nonce": "n"}}),
}


def test_bad_frames_refused_then_good_request_served(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master:
            for name, frame in BAD_FRAMES.items():
                with capture_logs() as logs:
                    reply = await raw_request(master, frame)
                assert reply == "bad load", name
                assert any(e["log_level"] in ("warning", "info") for e in logs), name
                assert await good_auth(master) == "pending", f"after {name}"
    asyncio.run(scenario())


def test_100_mb_frame_dropped_without_stalling(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master:
            reply = await raw_request(master, b"\x00" * (100 * 1024 * 1024), timeout=2)
            assert reply is TimeoutError  # the transport drops it: no reply, no buffering
            assert await good_auth(master) == "pending"
    asyncio.run(scenario())


def test_unsupported_algorithm_named(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master:
            load = {"cmd": "_auth", "id": "x", "pub": "p", "nonce": "n", "enc_algo": "RSA-MD5"}
            reply = await raw_request(master, codec.packb({"enc": "clear", "load": load}))
            assert reply == {"enc": "clear", "load": {"ret": "bad enc algo"}}
    asyncio.run(scenario())


def test_pending_minion_gets_no_pillar_and_impostor_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master:
            async with running_agent(tmp_path / "a", master, "car-a") as car_a:
                link = car_a.link
                session = link.session
                assert session is not None
                # S2: car-a's session and token, but the inner id claims car-b.
                env = messages.aes_request({"cmd": "_pillar"}, minion_id="car-a", session=session,
                                           tok=rsa.x931_sign(car_a.keys.private_key, b"salt"),
                                           nonce=messages.new_nonce())
                inner = session.loads(env["load"])
                inner["id"] = "car-b"
                env["load"] = session.dumps(inner)
                assert await raw_request(master, codec.packb(env)) == "bad load"
                # S1: a pending minion (valid key, valid token) asking for pillar.
                pending_key = rsa.generate_private_key()
                req = messages.AuthRequest("car-p", rsa.clean_pem(rsa.public_pem(pending_key)),
                                           messages.new_nonce())
                await raw_request(master, codec.packb(messages.auth_request(req)))
                env = messages.aes_request({"cmd": "_pillar"}, minion_id="car-p",
                                           session=Crypticle(session.key_string),
                                           tok=rsa.x931_sign(pending_key, b"salt"),
                                           nonce=messages.new_nonce())
                assert await raw_request(master, codec.packb(env)) == "bad load"
                # The good minion is still served.
                assert await link.request({"cmd": "_minion_event", "id": "car-a",
                                            "tag": "t", "data": {}}) is True
    asyncio.run(scenario())


def test_return_for_untargeted_job_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master:
            async with running_agent(tmp_path / "a", master, "car-a"), \
                    running_agent(tmp_path / "b", master, "car-b") as car_b:
                pub, expected = master.register_job("test.ping", [], "car-a", "glob")
                assert expected == ["car-a"]
                forged = messages.JobReturn("car-b", pub.jid, "test.ping", "I was not asked")
                assert await car_b.link.request(forged.load()) is False
                record = master.jobcache.get_job(pub.jid)
                assert record is not None and "car-b" not in record.returns
    asyncio.run(scenario())


def test_unknown_command_answered_false(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master:
            async with running_agent(tmp_path / "a", master, "car-a") as car:
                assert await car.link.request({"cmd": "_no_such_thing"}) is False
    asyncio.run(scenario())


def test_msgpack_bomb_map_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master:
            # A map header claiming 4 billion entries in a few bytes.
            assert await raw_request(master, b"\xdf\xff\xff\xff\xff") == "bad load"
            assert await raw_request(master, msgpack.packb({"enc": "aes"})) == "bad load"
            assert await good_auth(master) == "pending"
    asyncio.run(scenario())



def test_half_sent_frame_does_not_stall_other_clients(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master:
            # A client that opens TCP, sends a ZMTP greeting fragment and goes quiet.
            reader, writer = await asyncio.open_connection("127.0.0.1", master.opts["ret_port"])
            writer.write(b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f\x03")
            await writer.drain()
            try:
                assert await good_auth(master) == "pending"
            finally:
                writer.close()
                await writer.wait_closed()
    asyncio.run(scenario())


def test_minion_cannot_fire_events_as_another(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path) as master:
            async with running_agent(tmp_path / "b", master, "car-b") as car_b:
                sub = master.events.subscribe("*/dtc/*")
                own = master.events.subscribe("vehicle/car-b/*")
                try:
                    for tag in ("vehicle/car-a/dtc/new", "salt/job/1/ret/car-a",
                                "salt/minion/car-a/start"):
                        await car_b.link.request({"cmd": "_minion_event", "id": "car-b",
                                                  "tag": tag, "data": {"id": "car-a"}})
                    await car_b.link.request({"cmd": "_minion_event", "id": "car-b",
                                              "tag": "vehicle/car-b/dtc/new",
                                              "data": {"id": "car-a"}})
                    event = await asyncio.wait_for(own.get(), 5)
                    assert event.data["id"] == "car-b"  # the sender, whatever it claimed
                    assert sub.queue.qsize() == 1  # only car-b's own dtc event got through
                finally:
                    sub.close()
                    own.close()
    asyncio.run(scenario())
