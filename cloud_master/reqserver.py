"""Answers minions' requests on 4506: ``_auth``, ``_return``, ``_pillar``, ``_minion_event``, …

Takes raw frames and returns raw replies; the sockets live in ``server``. Every bad frame
is answered (or dropped) with a log line, and never raises out of ``handle``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from autopi_proto import codec, messages, rsa, targeting
from autopi_proto.crypticle import Crypticle, generate_key_string
from autopi_proto.errors import AuthenticationError, DecodeError, ProtoError, UnsupportedAlgorithm
from autopi_proto.jid import gen_jid
from cloud_master.events import EventBus
from cloud_master.fileserver import FileServer
from cloud_master.ingest import TelemetryIngest
from cloud_master.jobcache import Job, JobCache, Return
from cloud_master.jobs import JobTracker
from cloud_master.minions import MinionData
from cloud_master.pillar import PillarCompiler
from cloud_master.pki import InvalidMinionId, InvalidPublicKey, KeyState, KeyStore

log = structlog.get_logger(__name__)

BAD_LOAD = "bad load"
Handler = Callable[[messages.OpenedRequest], Awaitable[Any]]


class SharedKey:
    """The publish key every accepted minion holds, its serial, and when it was made."""

    def __init__(self) -> None:
        self.crypticle = Crypticle(generate_key_string())
        self.created = time.monotonic()
        self.serial = 0
        self._signature: bytes | None = None

    def rotate(self) -> None:
        self.crypticle = Crypticle(generate_key_string())
        self.created = time.monotonic()
        self.serial = 0
        self._signature = None

    def signature(self, master_key: rsa.RSAPrivateKey) -> bytes:
        """The master's signature of this key, made once per key rather than once per auth."""
        if self._signature is None:
            self._signature = messages.shared_key_signature(self.crypticle.key_string, master_key)
        return self._signature

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial


class Sessions:
    """Per-minion session keys, renewed after ``lifetime`` seconds; memory only."""

    def __init__(self, lifetime: float) -> None:
        self._keys: dict[str, tuple[float, Crypticle]] = {}
        self._lifetime = lifetime

    def issue(self, minion_id: str) -> Crypticle:
        current = self._keys.get(minion_id)
        if current is None or time.monotonic() - current[0] > self._lifetime:
            current = (time.monotonic(), Crypticle(generate_key_string()))
            self._keys[minion_id] = current
        return current[1]

    def get(self, minion_id: str) -> Crypticle | None:
        current = self._keys.get(minion_id)
        return current[1] if current else None

    def drop(self, minion_id: str) -> None:
        self._keys.pop(minion_id, None)

    def ids(self) -> list[str]:
        return list(self._keys)


class ReturnWriter:
    """Group commit: returns that arrive while a transaction runs go into the next one."""

    def __init__(self, jobcache: JobCache) -> None:
        self._jobcache = jobcache
        self._waiting: list[tuple[Return, asyncio.Future[bool]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def save(self, ret: Return) -> bool:
        """Store ``ret``; True when new, False for a resend. Raises if the store failed."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((ret, done))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                stored = await asyncio.to_thread(self._jobcache.save_returns,
                                                 [ret for ret, _ in batch])
            except Exception as err:  # each waiting request gets the error (no ack)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(err)
                continue
            for (_, done), new in zip(batch, stored, strict=True):
                if not done.done():
                    done.set_result(new)


class RequestHandler:
    """The master's side of the request channel."""

    def __init__(self, opts: Mapping[str, Any], keys: KeyStore, jobcache: JobCache,
                 tracker: JobTracker, events: EventBus, minions: MinionData,
                 shared: SharedKey, preseed: Mapping[str, str] | None = None,
                 telemetry: TelemetryIngest | None = None) -> None:
        self.opts = opts
        self.keys = keys
        self.jobcache = jobcache
        self.tracker = tracker
        self.events = events
        self.minions = minions
        self.shared = shared
        self.sessions = Sessions(float(opts.get("publish_session", 86400)))
        self.preseed = dict(preseed or {})
        self.telemetry = telemetry
        self.returns = ReturnWriter(jobcache)
        self._verified_tokens: dict[tuple[str, bytes], rsa.RSAPublicKey] = {}
        self._pubs: dict[str, tuple[str, rsa.RSAPublicKey]] = {}
        self.handlers: dict[str, Handler] = {
            "_return": self._return,
            "_pillar": self._pillar,
            "_minion_event": self._minion_event,
            "_mine": self._false,
            "_mine_get": self._empty_map,
            "_mine_delete": self._false,
            "_ext_nodes": self._empty_map,
            "_register_resources": self._true,
            "_telemetry": self._telemetry,
        }
        # _file_envs, _file_list, _file_hash, _serve_file, _dir_list, _master_opts ...
        self.handlers.update(FileServer(opts).handlers())
        self.pillar = PillarCompiler(opts)

    # -- entry point ---------------------------------------------------------------------

    async def handle(self, frame: bytes) -> bytes | None:
        """One request frame in, one reply frame out (None: no reply is owed)."""
        max_size = int(self.opts.get("max_request_size", 16 * 1024 * 1024))
        try:
            message = messages.envelope(codec.unpackb(frame, max_size=max_size))
        except DecodeError as err:
            log.warning("request.malformed", error=str(err), size=len(frame))
            return codec.packb(BAD_LOAD)
        try:
            if message["enc"] == "clear":
                reply = await self._clear(message)
            else:
                reply = await self._aes(message, max_size)
        except (ProtoError, KeyError, TypeError, ValueError) as err:
            log.warning("request.refused", error=f"{type(err).__name__}: {err}",
                        minion=message.get("id") if isinstance(message.get("id"), str) else None)
            reply = BAD_LOAD
        return codec.packb(reply)

    # -- _auth -------------------------------------------------------------------------

    async def _clear(self, message: Mapping[str, Any]) -> Any:
        load = message["load"]
        if not isinstance(load, dict) or load.get("cmd") != "_auth":
            raise DecodeError("only _auth may be sent in clear")
        try:
            req = messages.parse_auth_request(load)
        except UnsupportedAlgorithm as err:
            return {"enc": "clear", "load": {"ret": str(err)}}
        return await self.auth(req)

    async def auth(self, req: messages.AuthRequest) -> dict[str, Any]:
        try:
            state = self.keys.register(req.minion_id, req.pub,
                                       auto_accept=bool(self.opts.get("auto_accept")),
                                       preseed=self.preseed)
        except (InvalidMinionId, InvalidPublicKey) as err:
            log.warning("auth.invalid", minion=req.minion_id, error=str(err))
            state = KeyState.DENIED
        master = self.keys.master_keys()
        self.events.fire("salt/auth", {"id": req.minion_id, "act": _ACT[state],
                                       "result": state is KeyState.ACCEPTED, "pub": req.pub})
        if state is not KeyState.ACCEPTED:
            self.sessions.drop(req.minion_id)
            return messages.auth_reply_status(state is KeyState.PENDING, req, master.private_key)
        grant = messages.AuthGrant(self.shared.crypticle.key_string,
                                   self.sessions.issue(req.minion_id).key_string,
                                   int(self.opts["publish_port"]))
        reply = await asyncio.to_thread(messages.auth_reply_accepted, req, grant,
                                        master.private_key, master.public_pem,
                                        self.shared.signature(master.private_key))
        log.info("auth.accepted", minion=req.minion_id)
        return reply

    # -- encrypted requests --------------------------------------------------------------

    def accepted_pub(self, minion_id: str) -> rsa.RSAPublicKey | None:
        """The accepted key of a minion, parsed once per key text (S1: None unless accepted)."""
        pem = self.keys.accepted_pub(minion_id)
        if pem is None:
            self._pubs.pop(minion_id, None)
            return None
        cached = self._pubs.get(minion_id)
        if cached is None or cached[0] != pem:
            cached = (pem, rsa.load_public(pem))
            self._pubs[minion_id] = cached
        return cached[1]

    async def _aes(self, message: Mapping[str, Any], max_size: int) -> Any:
        try:
            opened = messages.open_aes_request(message, session_for=self.sessions.get,
                                               pub_for=self.accepted_pub, max_size=max_size,
                                               verified=self._verified_tokens)
        except AuthenticationError as err:
            # A stock minion re-authenticates when it cannot read this reply.
            log.info("request.unauthenticated", minion=message.get("id"), error=str(err))
            return BAD_LOAD
        cmd = opened.load.get("cmd")
        handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            log.warning("request.unknown_cmd", minion=opened.minion_id, cmd=cmd)
            ret: Any = False
        else:
            ret = await handler(opened)
        if isinstance(ret, _Private):
            return ret.reply
        session = self.sessions.get(opened.minion_id)
        assert session is not None
        return messages.seal_reply(ret, session, opened.nonce)

    async def _return(self, req: messages.OpenedRequest) -> Any:
        ret = messages.parse_return(req.load)
        if ret.minion_id != req.minion_id:
            raise AuthenticationError("return names another minion")
        if ret.jid == "req":  # a minion's own scheduled job: it gets a jid here
            ret = self._own_job(ret)
        elif not self._targeted(ret.jid, ret.minion_id):
            log.warning("return.untargeted", minion=ret.minion_id, jid=ret.jid)
            return False
        # Acknowledged only once on disk (R1); returns arriving together share one fsync.
        await self.returns.save(Return(jid=ret.jid, minion_id=ret.minion_id, fun=ret.fun,
                                       ret=ret.ret, retcode=ret.retcode, success=ret.success,
                                       received=time.time()))
        self.tracker.record(ret)
        self.events.fire(f"salt/job/{ret.jid}/ret/{ret.minion_id}", {
            "id": ret.minion_id, "jid": ret.jid, "fun": ret.fun, "fun_args": ret.fun_args,
            "return": ret.ret, "retcode": ret.retcode, "success": ret.success, "out": ret.out,
        })
        return True

    def _own_job(self, ret: messages.JobReturn) -> messages.JobReturn:
        """A jid for a minion's own job; stable per ``uid`` so a resend is not a new job."""
        jid = f"req-{ret.uid}" if ret.uid else gen_jid()
        if self.jobcache.get_job(jid) is None:
            self.jobcache.save_job(Job(jid=jid, fun=ret.fun, arg=list(ret.fun_args),
                                       tgt=ret.minion_id, tgt_type="list", user="schedule",
                                       minions=[ret.minion_id], started=time.time()))
        return _with_jid(ret, jid)

    def _targeted(self, jid: str, minion_id: str) -> bool:
        """Was this minion targeted by this job? Jobs from before a restart come from the cache."""
        if self.tracker.get(jid) is not None:
            return self.tracker.targeted(jid, minion_id, self.minions.grains)
        record = self.jobcache.get_job(jid)
        if record is None:
            return False
        job = record.job
        return minion_id in job.minions or targeting.matches(
            job.tgt, job.tgt_type, minion_id, self.minions.grains(minion_id))

    async def _telemetry(self, req: messages.OpenedRequest) -> Any:
        """A batch of samples: stored idempotently, then acknowledged (False: retry later)."""
        if self.telemetry is None:
            return False
        items = req.load.get("samples")
        if req.load.get("enc") == "zlib":
            items = codec.unpackb(_inflate(messages.as_bytes(items), self._max_size()))
        if not isinstance(items, list):
            raise DecodeError("telemetry samples must be a list")
        try:
            stored, duplicates, rejected, series = await self.telemetry.ingest(req.minion_id, items)
        except ConnectionError as err:  # StoreUnavailable: the agent keeps the batch and retries
            log.warning("telemetry.store_unavailable", minion=req.minion_id, error=str(err))
            return False
        self.events.fire(f"vehicle/{req.minion_id}/telemetry", {
            "id": req.minion_id, "samples": len(items), "stored": stored,
            "duplicates": duplicates, "rejected": rejected, "series": series})
        return {"stored": stored, "duplicates": duplicates, "rejected": rejected}

    def _max_size(self) -> int:
        return int(self.opts.get("max_request_size", 16 * 1024 * 1024))

    async def _pillar(self, req: messages.OpenedRequest) -> Any:
        grains = req.load.get("grains")
        if isinstance(grains, dict):
            self.minions.set_grains(req.minion_id, grains)
        pillarenv = req.load.get("pillarenv")
        override = req.load.get("pillar_override")
        data = await asyncio.to_thread(
            self.pillar.compile, req.minion_id, dict(self.minions.grains(req.minion_id)),
            pillarenv=pillarenv if isinstance(pillarenv, str) else None,
            override=override if isinstance(override, dict) else None)
        pub = self.accepted_pub(req.minion_id)
        assert pub is not None
        master = self.keys.master_keys()
        # S4: encrypted to this minion's key alone.
        reply = messages.private_reply(data, minion_pub=pub, master_key=master.private_key,
                                       nonce=req.nonce or "", enc_algo=req.enc_algo,
                                       sig_algo=req.sig_algo)
        return _Private(reply)

    async def _minion_event(self, req: messages.OpenedRequest) -> Any:
        events = req.load.get("events")
        batch = events if isinstance(events, list) else [req.load]
        for event in batch:
            if not isinstance(event, dict) or not isinstance(event.get("tag"), str):
                continue
            if not may_fire(req.minion_id, event["tag"]):
                log.warning("event.refused", minion=req.minion_id, tag=event["tag"][:120])
                continue
            data = event.get("data")
            data = dict(data) if isinstance(data, dict) else {"data": data}
            data["id"] = req.minion_id  # S2: an event always names its real sender
            self.events.fire(event["tag"], data)
        return True

    async def _empty_list(self, req: messages.OpenedRequest) -> Any:
        return []

    async def _empty_map(self, req: messages.OpenedRequest) -> Any:
        return {}

    async def _false(self, req: messages.OpenedRequest) -> Any:
        return False

    async def _true(self, req: messages.OpenedRequest) -> Any:
        return True


class _Private:
    """A reply already encrypted for one minion (pillar): sent as it is."""

    __slots__ = ("reply",)

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply


# Tags only the master itself fires: a minion may not fake job returns, auth or key events.
_MASTER_TAGS = ("salt/job/", "salt/auth", "salt/key", "salt/run/")
# Tags that name a minion in their third part: only that minion may fire them.
_OWNED_TAGS = ("vehicle/", "salt/minion/")


def may_fire(minion_id: str, tag: str) -> bool:
    """Whether ``minion_id`` may put an event with ``tag`` on the master's bus (S2)."""
    if tag.startswith(_MASTER_TAGS):
        return False
    for prefix in _OWNED_TAGS:
        if tag.startswith(prefix):
            return tag[len(prefix):].split("/", 1)[0] == minion_id
    return True


def _inflate(data: bytes, limit: int) -> bytes:
    """zlib-decompress at most ``limit`` bytes (a small bomb must not fill memory)."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit)
    except zlib.error as err:
        raise DecodeError(f"bad zlib data: {err}") from err
    if inflater.unconsumed_tail:
        raise DecodeError(f"telemetry batch inflates beyond {limit} bytes")
    return out


def _with_jid(ret: messages.JobReturn, jid: str) -> messages.JobReturn:
    return dataclasses.replace(ret, jid=jid)


_ACT = {KeyState.ACCEPTED: "accept", KeyState.PENDING: "pend",
        KeyState.REJECTED: "reject", KeyState.DENIED: "denied"}
