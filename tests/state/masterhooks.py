"""Give an in-process Master the file server and per-minion pillar, as the hooks in
``cloud_master/reqserver.py`` will (until then, tests patch the handler table)."""

from __future__ import annotations

import asyncio
from typing import Any

from autopi_proto import messages
from cloud_master import reqserver
from cloud_master.fileserver import FileServer
from cloud_master.pillar import PillarCompiler
from cloud_master.server import Master


def serve_states(master: Master) -> PillarCompiler:
    """Add the fileserver handlers and a ``_pillar`` that compiles pillar_roots per minion."""
    handler = master.handler
    compiler = PillarCompiler(master.opts)

    async def pillar(req: messages.OpenedRequest) -> Any:
        grains = req.load.get("grains")
        if isinstance(grains, dict):
            handler.minions.set_grains(req.minion_id, grains)
        pillarenv = req.load.get("pillarenv")
        override = req.load.get("pillar_override")
        data = await asyncio.to_thread(
            compiler.compile, req.minion_id, handler.minions.grains(req.minion_id),
            pillarenv=pillarenv if isinstance(pillarenv, str) else None,
            override=override if isinstance(override, dict) else None)
        pub = handler.accepted_pub(req.minion_id)
        assert pub is not None
        reply = messages.private_reply(data, minion_pub=pub,
                                       master_key=handler.keys.master_keys().private_key,
                                       nonce=req.nonce or "", enc_algo=req.enc_algo,
                                       sig_algo=req.sig_algo)
        return reqserver._Private(reply)

    handler.handlers["_pillar"] = pillar
    handler.handlers.update(FileServer(master.opts).handlers())
    return compiler
