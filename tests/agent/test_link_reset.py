"""A request in flight survives reset() from another task (the publisher reconnected)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from autopi_agent.keys import MasterKeyCache, MinionKeys
from autopi_agent.transport import MasterLink, TransportError
from autopi_proto import codec


def silent_master_and_link(ctx: zmq.asyncio.Context,
                           tmp_path: Path) -> tuple[zmq.asyncio.Socket, MasterLink]:
    """A ROUTER that answers only when the test says so, and a link to it."""
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    keys = MinionKeys.load_or_create(tmp_path / "pki", 2048)
    opts = {"id": "car-0001", "master": "127.0.0.1", "master_port": port, "publish_port": 1}
    return router, MasterLink(opts, keys, MasterKeyCache(tmp_path / "pki", ""), ctx)


def test_reset_during_a_request_resends_it_on_a_fresh_socket(tmp_path: Path) -> None:
    async def scenario() -> None:
        ctx = zmq.asyncio.Context()
        router, link = silent_master_and_link(ctx, tmp_path)
        try:
            request = asyncio.create_task(link.roundtrip({"cmd": "probe"}, timeout=60))
            first = await asyncio.wait_for(router.recv_multipart(), 30)
            assert codec.unpackb(first[-1]) == {"cmd": "probe"}
            link.reset()  # what the daemon does when the publisher link comes back
            second = await asyncio.wait_for(router.recv_multipart(), 30)
            assert second[0] != first[0]  # sent again, from a fresh socket
            await router.send_multipart([second[0], b"", codec.packb({"ok": True})])
            assert await asyncio.wait_for(request, 30) == {"ok": True}
        finally:
            link.close()
            router.close(0)
            ctx.term()

    asyncio.run(scenario())


def test_close_during_a_request_fails_it_and_leaves_no_socket(tmp_path: Path) -> None:
    async def scenario() -> None:
        ctx = zmq.asyncio.Context()
        router, link = silent_master_and_link(ctx, tmp_path)
        request = asyncio.create_task(link.roundtrip({"cmd": "probe"}, timeout=60))
        await asyncio.wait_for(router.recv_multipart(), 30)
        link.close()  # the agent stops while a request waits for its reply
        with pytest.raises(TransportError, match="closed"):
            await asyncio.wait_for(request, 30)
        router.close(0)
        # Every socket of the context is closed, so term() returns (it would hang otherwise).
        await asyncio.wait_for(asyncio.to_thread(ctx.term), 30)

    asyncio.run(scenario())
