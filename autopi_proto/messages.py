"""Envelopes of Salt's request/reply (4506) and publish (4505) channels, built and checked.

Every ``open_*``/``parse_*`` function takes an already-decoded message, checks its shape and
its cryptography, and raises ``DecodeError`` (wrong shape) or ``AuthenticationError`` (a MAC,
signature, nonce or token that does not verify). Builders return plain dicts ready for
``codec.packb``.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autopi_proto import codec, rsa
from autopi_proto.crypticle import Crypticle, generate_key_string
from autopi_proto.errors import AuthenticationError, DecodeError, UnsupportedAlgorithm
from autopi_proto.rsa import RSAPrivateKey, RSAPublicKey

PROTOCOL_VERSION = 3
TOKEN_PLAINTEXT = b"salt"
_ID_FORBIDDEN = re.compile(r"[\x00/\\]")
_UID = re.compile(r"[0-9a-f]{8,64}")


def new_nonce() -> str:
    """A request nonce: 32 lowercase hex digits, as Salt's ``uuid4().hex``."""
    return uuid.uuid4().hex


def as_bytes(value: object) -> bytes:
    """Bytes that the codec may have turned into str (UTF-8 round-trips losslessly)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise DecodeError(f"expected bytes, got {type(value).__name__}")


def valid_minion_id(minion_id: object) -> bool:
    """Salt's rule: a non-empty string with no path separator, NUL or parent reference."""
    return (
        isinstance(minion_id, str)
        and 0 < len(minion_id) <= 255
        and not _ID_FORBIDDEN.search(minion_id)
        and minion_id not in (".", "..")
        and not minion_id.startswith("..")
    )


def _require(mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DecodeError(f"field {key!r} must be {names}, got {type(value).__name__}")
    return value


def envelope(message: object) -> dict[str, Any]:
    """Check the outer request envelope ``{enc, load, version[, id, enc_algo, sig_algo]}``."""
    if not isinstance(message, dict):
        raise DecodeError("a request must be a map")
    enc = message.get("enc")
    if enc not in ("clear", "aes"):
        raise DecodeError(f"unknown enc {enc!r}")
    if "load" not in message:
        raise DecodeError("request has no load")
    return message


# --- _auth -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What a minion presents to authenticate."""

    minion_id: str
    pub: str
    nonce: str
    enc_algo: str = rsa.DEFAULT_ENCRYPTION
    sig_algo: str = rsa.DEFAULT_SIGNING
    token: bytes | None = None  # a random token encrypted to the cached master key


def auth_request(req: AuthRequest) -> dict[str, Any]:
    """The clear ``_auth`` request envelope."""
    load: dict[str, Any] = {
        "cmd": "_auth",
        "id": req.minion_id,
        "nonce": req.nonce,
        "enc_algo": req.enc_algo,
        "sig_algo": req.sig_algo,
        "pub": req.pub,
    }
    if req.token is not None:
        load["token"] = req.token
    return {"enc": "clear", "load": load, "version": PROTOCOL_VERSION}


def parse_auth_request(load: Mapping[str, Any]) -> AuthRequest:
    """Check an ``_auth`` load's fields; UnsupportedAlgorithm names a bad algorithm."""
    minion_id = _require(load, "id", str)
    if not valid_minion_id(minion_id):
        raise DecodeError(f"invalid minion id {minion_id!r}")
    pub = _require(load, "pub", str)
    nonce = load.get("nonce")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= 64:
        raise DecodeError("_auth needs a nonce")
    enc_algo = load.get("enc_algo", rsa.OAEP_SHA1)
    sig_algo = load.get("sig_algo", rsa.PKCS1V15_SHA1)
    if enc_algo not in rsa.ENCRYPTION_ALGORITHMS:
        raise UnsupportedAlgorithm("bad enc algo")
    if sig_algo not in rsa.SIGNING_ALGORITHMS:
        raise UnsupportedAlgorithm("bad sig algo")
    token = load.get("token")
    return AuthRequest(minion_id, pub.strip(), nonce, enc_algo, sig_algo,
                       as_bytes(token) if token is not None else None)


def signed_clear(load: Mapping[str, Any], master_key: RSAPrivateKey, sig_algo: str) -> dict[str, Any]:
    """A clear reply whose packed load is signed by the master (Salt's ``_clear_signed``)."""
    packed = codec.packb(dict(load))
    return {"enc": "clear", "load": packed, "sig": rsa.sign(master_key, packed, sig_algo)}


def auth_reply_status(ret: bool | str, req: AuthRequest, master_key: RSAPrivateKey) -> dict[str, Any]:
    """The reply for a key that is not accepted: ``ret`` False (refused), True (pending), "full"."""
    return signed_clear({"ret": ret, "nonce": req.nonce}, master_key, req.sig_algo)


@dataclass(frozen=True, slots=True)
class AuthGrant:
    """The secrets the master hands an accepted minion."""

    aes: str  # shared publish key string
    session: str  # this minion's request key string
    publish_port: int


def shared_key_signature(aes: str, master_key: RSAPrivateKey) -> bytes:
    """The master's X9.31 signature over the shared key's digest (the same for every minion)."""
    return rsa.x931_sign(master_key, _sha256_hex(aes.encode()))


def auth_reply_accepted(req: AuthRequest, grant: AuthGrant, master_key: RSAPrivateKey,
                        master_pub_pem: str, aes_sig: bytes | None = None) -> dict[str, Any]:
    """The signed reply that gives an accepted minion the shared and session keys.

    ``aes_sig`` is ``shared_key_signature(grant.aes, master_key)``, computed once per shared
    key by callers that authenticate many minions.
    """
    minion_pub = rsa.load_public(req.pub)
    aes = grant.aes.encode()
    reply: dict[str, Any] = {
        "enc": "pub",
        "pub_key": rsa.clean_pem(master_pub_pem),
        "publish_port": grant.publish_port,
        "aes": rsa.encrypt(minion_pub, aes, req.enc_algo),
        "session": rsa.encrypt(minion_pub, grant.session.encode(), req.enc_algo),
        "sig": aes_sig or shared_key_signature(grant.aes, master_key),
        "nonce": req.nonce,
    }
    if req.token is not None:
        # Prove we hold the master key: decrypt the minion's token and hand it back.
        clear_token = rsa.decrypt(master_key, req.token, req.enc_algo)
        reply["token"] = rsa.encrypt(minion_pub, clear_token, req.enc_algo)
    return signed_clear(reply, master_key, req.sig_algo)


def _sha256_hex(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode()


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """What an ``_auth`` reply said, after every check passed.

    ``status`` is "accepted", "pending", "rejected" or "full". For "accepted", the caller
    must still decide whether to trust ``master_pub`` (pinning / trust on first use) before
    using the keys: ``parse_auth_reply`` only proves the reply is consistent with it.
    """

    status: str
    master_pub: str | None = None
    aes: str | None = None
    session: str | None = None
    publish_port: int | None = None


def parse_auth_reply(reply: object, req: AuthRequest, minion_key: RSAPrivateKey,
                     known_master_pub: str | None, clear_token: bytes | None = None) -> AuthOutcome:
    """Verify an ``_auth`` reply against the request that caused it."""
    if not isinstance(reply, dict):
        raise DecodeError(f"auth reply is not a map: {reply!r:.80}")
    load = reply.get("load")
    if isinstance(load, dict):  # unsigned error replies ("bad enc algo", "bad sig algo")
        raise AuthenticationError(f"master refused the request: {load.get('ret')!r}")
    packed = as_bytes(load)
    inner = codec.unpackb(packed)
    if not isinstance(inner, dict):
        raise DecodeError("auth reply load is not a map")
    signer_pem = inner.get("pub_key") if known_master_pub is None else known_master_pub
    if isinstance(signer_pem, str):
        signer = rsa.load_public(signer_pem)
        if not rsa.verify(signer, packed, as_bytes(reply.get("sig", b"")), req.sig_algo):
            raise AuthenticationError("auth reply signature does not verify")
    elif "pub_key" in inner:
        raise DecodeError("auth reply lacks the master key")
    if inner.get("nonce") != req.nonce:
        raise AuthenticationError("auth reply nonce does not match")
    if "pub_key" not in inner:
        ret = inner.get("ret")
        status = {True: "pending", False: "rejected", "full": "full"}.get(ret)
        if status is None:
            raise DecodeError(f"unexpected auth status {ret!r}")
        return AuthOutcome(status)
    return _accepted(inner, req, minion_key, clear_token)


def _accepted(inner: Mapping[str, Any], req: AuthRequest, minion_key: RSAPrivateKey,
              clear_token: bytes | None) -> AuthOutcome:
    master_pem = _require(inner, "pub_key", str)
    master_pub = rsa.load_public(master_pem)
    aes = rsa.decrypt(minion_key, as_bytes(inner.get("aes")), req.enc_algo)
    if rsa.x931_recover(master_pub, as_bytes(inner.get("sig"))) != _sha256_hex(aes):
        raise AuthenticationError("the shared key is not signed by the master")
    aes_text = aes.decode()
    if "_|-" in aes_text:  # auth_mode 2+: "<aes>_|-<token>"
        aes_text, echoed = aes_text.split("_|-", 1)
        echoed_token: bytes | None = echoed.encode()
    elif "token" in inner:
        echoed_token = rsa.decrypt(minion_key, as_bytes(inner["token"]), req.enc_algo)
    else:
        echoed_token = None
    if clear_token is not None and echoed_token != clear_token:
        raise AuthenticationError("the master failed to decrypt our token")
    session = rsa.decrypt(minion_key, as_bytes(inner.get("session")), req.enc_algo).decode()
    port = inner.get("publish_port")
    return AuthOutcome("accepted", rsa.clean_pem(master_pem), aes_text, session,
                       int(port) if isinstance(port, (int, str)) else None)


# --- encrypted requests (protocol v3) ---------------------------------------------------

def aes_request(load: Mapping[str, Any], *, minion_id: str, session: Crypticle, tok: bytes,
                nonce: str, enc_algo: str = rsa.DEFAULT_ENCRYPTION,
                sig_algo: str = rsa.DEFAULT_SIGNING) -> dict[str, Any]:
    """An encrypted request: the load gains nonce, ts, tok and id, sealed with the session key.

    ``tok`` is ``rsa.x931_sign(minion_key, TOKEN_PLAINTEXT)``; it is deterministic, so
    callers compute it once per key.
    """
    sealed = dict(load)
    sealed.update(nonce=nonce, ts=int(time.time()), tok=tok, id=minion_id)
    return {
        "enc": "aes",
        "load": session.dumps(sealed),
        "version": PROTOCOL_VERSION,
        "id": minion_id,
        "enc_algo": enc_algo,
        "sig_algo": sig_algo,
    }


@dataclass(frozen=True, slots=True)
class OpenedRequest:
    """An encrypted request whose sender proved its identity."""

    minion_id: str
    load: dict[str, Any]
    nonce: str | None
    enc_algo: str
    sig_algo: str


def open_aes_request(message: Mapping[str, Any], *, session_for: Callable[[str], Crypticle | None],
                     pub_for: Callable[[str], RSAPublicKey | None],
                     max_size: int | None = None,
                     verified: dict[tuple[str, bytes], RSAPublicKey] | None = None
                     ) -> OpenedRequest:
    """Decrypt a v3 request and prove its sender: outer id = inner id = owner of ``tok``.

    ``tok`` is deterministic per key, so a caller may pass ``verified``, a cache of tokens
    already checked against the very key object ``pub_for`` returns; a changed key misses it.
    """
    minion_id = message.get("id")
    if not valid_minion_id(minion_id):
        raise DecodeError(f"invalid minion id {minion_id!r}")
    assert isinstance(minion_id, str)
    session = session_for(minion_id)
    if session is None:
        raise AuthenticationError(f"no session for {minion_id!r}")
    load = session.loads(as_bytes(message.get("load")), max_size=max_size)
    if not isinstance(load, dict):
        raise DecodeError("request load is not a map")
    if load.get("id") != minion_id:
        raise AuthenticationError(f"inner id {load.get('id')!r} differs from {minion_id!r}")
    pub = pub_for(minion_id)
    tok = load.pop("tok", None)
    if pub is None or tok is None:
        raise AuthenticationError(f"token of {minion_id!r} does not verify")
    key = (minion_id, as_bytes(tok))
    if verified is None or verified.get(key) is not pub:
        if not _token_ok(pub, tok):
            raise AuthenticationError(f"token of {minion_id!r} does not verify")
        if verified is not None:
            if len(verified) > 100_000:
                verified.clear()
            verified[key] = pub
    nonce = load.pop("nonce", None)
    return OpenedRequest(minion_id, load, nonce if isinstance(nonce, str) else None,
                         str(message.get("enc_algo", rsa.OAEP_SHA1)),
                         str(message.get("sig_algo", rsa.PKCS1V15_SHA1)))


def _token_ok(pub: RSAPublicKey, tok: object) -> bool:
    try:
        return rsa.x931_recover(pub, as_bytes(tok)) == TOKEN_PLAINTEXT
    except (AuthenticationError, DecodeError):
        return False


def seal_reply(ret: Any, session: Crypticle, nonce: str | None) -> bytes:
    """A reply to an encrypted request: session-encrypted, starting with the request's nonce."""
    return session.dumps(ret, nonce)


def open_reply(reply: object, session: Crypticle, nonce: str) -> Any:
    """Decrypt a reply to ``aes_request``; AuthenticationError when it is not for us."""
    if isinstance(reply, str) or not isinstance(reply, (bytes, bytearray)):
        # The master answers "bad load" in clear when it cannot read the request.
        raise AuthenticationError(f"master did not accept the request: {reply!r:.80}")
    return session.loads(bytes(reply), nonce)


# --- private replies (_pillar) ----------------------------------------------------------

def private_reply(ret: Any, *, minion_pub: RSAPublicKey, master_key: RSAPrivateKey, nonce: str,
                  dictkey: str = "pillar", enc_algo: str = rsa.DEFAULT_ENCRYPTION,
                  sig_algo: str = rsa.DEFAULT_SIGNING) -> dict[str, Any]:
    """Data for one minion only: under a one-time key, itself encrypted to that minion."""
    one_time = generate_key_string()
    key = rsa.encrypt(minion_pub, one_time.encode(), enc_algo)
    data = codec.packb({"key": key, "pillar": {} if ret is False else ret, "nonce": nonce})
    signed = {"data": data, "sig": rsa.sign(master_key, data, sig_algo)}
    return {"key": key, dictkey: Crypticle(one_time).dumps(signed)}


def open_private_reply(reply: object, *, minion_key: RSAPrivateKey, master_pub: RSAPublicKey,
                       nonce: str, dictkey: str = "pillar",
                       enc_algo: str = rsa.DEFAULT_ENCRYPTION,
                       sig_algo: str = rsa.DEFAULT_SIGNING) -> Any:
    """Check and decrypt a ``private_reply``."""
    if not isinstance(reply, dict) or "key" not in reply:
        raise AuthenticationError("reply carries no one-time key")
    key = as_bytes(reply["key"])
    one_time = rsa.decrypt(minion_key, key, enc_algo)
    signed = Crypticle(one_time).loads(as_bytes(reply.get(dictkey)))
    if not isinstance(signed, dict):
        raise DecodeError("private reply is not a map")
    data = as_bytes(signed.get("data"))
    if not rsa.verify(master_pub, data, as_bytes(signed.get("sig", b"")), sig_algo):
        raise AuthenticationError("private reply signature does not verify")
    inner = codec.unpackb(data)
    if not isinstance(inner, dict) or as_bytes(inner.get("key", b"")) != key:
        raise AuthenticationError("private reply key mismatch")
    if inner.get("nonce") != nonce:
        raise AuthenticationError("private reply nonce mismatch")
    return inner.get("pillar")


# --- publishes (4505) -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Publish:
    """A job as published to minions."""

    fun: str
    arg: list[Any]
    tgt: str | list[str]
    tgt_type: str
    jid: str
    ret: str = ""
    user: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def load(self) -> dict[str, Any]:
        """The publish load in Salt's shape."""
        out = dict(self.extra)
        out.update(fun=self.fun, arg=list(self.arg), tgt=self.tgt, tgt_type=self.tgt_type,
                   jid=self.jid, ret=self.ret, user=self.user)
        return out


def publish_frame(pub: Publish, *, aes: Crypticle, serial: int, master_key: RSAPrivateKey,
                  sig_algo: str = rsa.DEFAULT_SIGNING) -> bytes:
    """The packed, encrypted and signed publish as it goes out on 4505."""
    load = pub.load()
    load["serial"] = serial
    sealed = aes.dumps(load)
    return codec.packb({"enc": "aes", "load": sealed, "sig": rsa.sign(master_key, sealed, sig_algo),
                        "sig_algo": sig_algo})


def open_publish(frame: bytes, *, aes: Crypticle, master_pub: RSAPublicKey,
                 max_size: int | None = None) -> Publish:
    """Verify the master's signature (always), then decrypt and check the serial.

    A bad signature raises AuthenticationError with ``forged=True`` semantics (no re-auth);
    an HMAC failure under a valid signature means the shared key rotated (re-auth, retry).
    """
    message = codec.unpackb(frame, max_size=max_size)
    if not isinstance(message, dict) or message.get("enc") != "aes":
        raise DecodeError("publish is not an aes envelope")
    sealed = as_bytes(message.get("load"))
    sig_algo = message.get("sig_algo", rsa.PKCS1V15_SHA1)
    if sig_algo not in rsa.SIGNING_ALGORITHMS:
        raise ForgedPublish(f"publish signed with unsupported algorithm {sig_algo!r}")
    if not rsa.verify(master_pub, sealed, as_bytes(message.get("sig", b"")), sig_algo):
        raise ForgedPublish("publish signature does not verify against the master key")
    return parse_publish_load(aes.loads(sealed, max_size=max_size))


class ForgedPublish(AuthenticationError):
    """A publish not signed by the master we trust (never a reason to re-authenticate)."""


def parse_publish_load(load: object) -> Publish:
    """Check a decrypted publish load's fields."""
    if not isinstance(load, dict):
        raise DecodeError("publish load is not a map")
    fun = _require(load, "fun", str)
    jid = load.get("jid")
    if isinstance(jid, int):
        jid = str(jid)
    if not isinstance(jid, str):
        raise DecodeError("publish has no jid")
    arg = load.get("arg", [])
    if not isinstance(arg, list):
        raise DecodeError("publish arg must be a list")
    tgt = load.get("tgt", "")
    if not isinstance(tgt, (str, list)):
        raise DecodeError("publish tgt must be a string or a list")
    known = {"fun", "arg", "tgt", "tgt_type", "jid", "ret", "user"}
    return Publish(fun, arg, tgt, str(load.get("tgt_type") or "glob"), jid,
                   str(load.get("ret") or ""), str(load.get("user") or ""),
                   {k: v for k, v in load.items() if k not in known})


# --- returns ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class JobReturn:
    """One minion's answer to one job."""

    minion_id: str
    jid: str
    fun: str
    ret: Any
    retcode: int = 0
    success: bool = True
    fun_args: list[Any] = field(default_factory=list)
    out: str | None = None
    uid: str | None = None  # a minion's own job (jid "req"): the same on every resend

    def load(self) -> dict[str, Any]:
        """The ``_return`` load in Salt's shape."""
        out: dict[str, Any] = {
            "cmd": "_return", "id": self.minion_id, "jid": self.jid, "fun": self.fun,
            "fun_args": list(self.fun_args), "return": self.ret, "retcode": self.retcode,
            "success": self.success,
        }
        if self.out:
            out["out"] = self.out
        if self.uid:
            out["uid"] = self.uid
        return out


def parse_return(load: Mapping[str, Any]) -> JobReturn:
    """Check a ``_return`` load (already authenticated as coming from ``load['id']``)."""
    minion_id = _require(load, "id", str)
    jid = load.get("jid")
    if isinstance(jid, int):
        jid = str(jid)
    if not isinstance(jid, str):
        raise DecodeError("return has no jid")
    fun = load.get("fun", "")
    retcode = load.get("retcode", 0)
    if isinstance(retcode, dict):  # Salt sends per-state retcodes for some functions
        retcode = max((v for v in retcode.values() if isinstance(v, int)), default=0)
    if not isinstance(retcode, int):
        retcode = 0
    fun_args = load.get("fun_args") or []
    uid = load.get("uid")
    return JobReturn(minion_id, jid, str(fun), load.get("return"), retcode,
                     bool(load.get("success", retcode == 0)),
                     fun_args if isinstance(fun_args, list) else [], load.get("out"),
                     uid if isinstance(uid, str) and _UID.fullmatch(uid) else None)
