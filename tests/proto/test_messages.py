"""Request, reply and publish envelopes: round trips, and every tampering refused."""

from __future__ import annotations

import msgpack
import pytest

from autopi_proto import codec, messages, rsa
from autopi_proto.crypticle import Crypticle, generate_key_string
from autopi_proto.errors import AuthenticationError, DecodeError, ReplayError, UnsupportedAlgorithm

MASTER = rsa.generate_private_key(2048)
MINION = rsa.generate_private_key(2048)
OTHER = rsa.generate_private_key(2048)
MASTER_PUB = rsa.public_pem(MASTER).decode()
MINION_PUB = rsa.clean_pem(rsa.public_pem(MINION))


def wire(obj: object) -> object:
    """What the other side sees after packing and unpacking."""
    return codec.unpackb(codec.packb(obj))


def request(token: bytes | None = None) -> messages.AuthRequest:
    return messages.AuthRequest("car-0001", MINION_PUB, messages.new_nonce(), token=token)


def test_auth_request_round_trip() -> None:
    req = request()
    env = wire(messages.auth_request(req))
    assert isinstance(env, dict)
    assert messages.parse_auth_request(env["load"]) == req


@pytest.mark.parametrize("field,value,error", [
    ("id", "../etc/passwd", DecodeError), ("id", 5, DecodeError), ("id", "a\0b", DecodeError),
    ("pub", None, DecodeError), ("nonce", None, DecodeError),
    ("enc_algo", "RSA-MD5", UnsupportedAlgorithm), ("sig_algo", "none", UnsupportedAlgorithm),
])
def test_auth_request_bad_fields(field: str, value: object, error: type[Exception]) -> None:
    load = messages.auth_request(request())["load"]
    load[field] = value
    with pytest.raises(error):
        messages.parse_auth_request(load)


def grant() -> messages.AuthGrant:
    return messages.AuthGrant(generate_key_string(), generate_key_string(), 4505)


def test_accepted_reply_gives_keys_and_checks_token() -> None:
    token = b"0123456789abcdef" * 2
    req = request(rsa.encrypt(MASTER.public_key(), token))
    g = grant()
    reply = wire(messages.auth_reply_accepted(req, g, MASTER, MASTER_PUB))
    out = messages.parse_auth_reply(reply, req, MINION, MASTER_PUB, clear_token=token)
    assert (out.status, out.aes, out.session, out.publish_port) == ("accepted", g.aes, g.session, 4505)
    assert out.master_pub == rsa.clean_pem(MASTER_PUB)


def test_reply_from_impostor_master_refused() -> None:
    req = request()
    reply = wire(messages.auth_reply_accepted(req, grant(), OTHER, rsa.public_pem(OTHER).decode()))
    with pytest.raises(AuthenticationError):
        messages.parse_auth_reply(reply, req, MINION, MASTER_PUB)


def test_reply_with_other_nonce_refused() -> None:
    reply = wire(messages.auth_reply_accepted(request(), grant(), MASTER, MASTER_PUB))
    with pytest.raises(AuthenticationError, match="nonce"):
        messages.parse_auth_reply(reply, request(), MINION, MASTER_PUB)


def test_impostor_that_cannot_decrypt_token_refused() -> None:
    token = b"t" * 32
    req = request(rsa.encrypt(MASTER.public_key(), token))
    forged = messages.AuthRequest(req.minion_id, req.pub, req.nonce)  # impostor drops the token
    reply = wire(messages.auth_reply_accepted(forged, grant(), MASTER, MASTER_PUB))
    with pytest.raises(AuthenticationError, match="token"):
        messages.parse_auth_reply(reply, req, MINION, MASTER_PUB, clear_token=token)


@pytest.mark.parametrize("ret,status", [(True, "pending"), (False, "rejected"), ("full", "full")])
def test_status_replies(ret: bool | str, status: str) -> None:
    req = request()
    reply = wire(messages.auth_reply_status(ret, req, MASTER))
    assert messages.parse_auth_reply(reply, req, MINION, MASTER_PUB).status == status


def sessions() -> tuple[Crypticle, bytes]:
    return Crypticle(generate_key_string()), rsa.x931_sign(MINION, messages.TOKEN_PLAINTEXT)


def test_aes_request_round_trip() -> None:
    session, tok = sessions()
    nonce = messages.new_nonce()
    env = wire(messages.aes_request({"cmd": "_return", "jid": "1"}, minion_id="car-0001",
                                    session=session, tok=tok, nonce=nonce))
    assert isinstance(env, dict)
    opened = messages.open_aes_request(env, session_for=lambda _id: session,
                                       pub_for=lambda _id: MINION.public_key())
    assert opened.minion_id == "car-0001" and opened.nonce == nonce
    assert opened.load["cmd"] == "_return" and "tok" not in opened.load
    reply = messages.seal_reply({"ok": True}, session, nonce)
    assert messages.open_reply(reply, session, nonce) == {"ok": True}
    with pytest.raises(AuthenticationError):
        messages.open_reply(reply, session, messages.new_nonce())
    with pytest.raises(AuthenticationError):
        messages.open_reply("bad load", session, nonce)


def test_request_as_another_minion_refused() -> None:
    session, tok = sessions()
    env = messages.aes_request({"cmd": "_return"}, minion_id="car-0001", session=session,
                               tok=tok, nonce="n" * 32)
    env["id"] = "car-0002"  # outer id claims another minion
    with pytest.raises(AuthenticationError):
        messages.open_aes_request(env, session_for=lambda _id: session,
                                  pub_for=lambda _id: MINION.public_key())


def test_token_signed_by_other_key_refused() -> None:
    session, _ = sessions()
    tok = rsa.x931_sign(OTHER, messages.TOKEN_PLAINTEXT)
    env = messages.aes_request({}, minion_id="car-0001", session=session, tok=tok, nonce="n" * 32)
    with pytest.raises(AuthenticationError, match="token"):
        messages.open_aes_request(env, session_for=lambda _id: session,
                                  pub_for=lambda _id: MINION.public_key())


def test_private_reply_only_opens_for_its_minion() -> None:
    nonce = messages.new_nonce()
    reply = wire(messages.private_reply({"secret": 1}, minion_pub=MINION.public_key(),
                                        master_key=MASTER, nonce=nonce))
    assert messages.open_private_reply(reply, minion_key=MINION, master_pub=MASTER.public_key(),
                                       nonce=nonce) == {"secret": 1}
    with pytest.raises(AuthenticationError):
        messages.open_private_reply(reply, minion_key=OTHER, master_pub=MASTER.public_key(),
                                    nonce=nonce)


def job(jid: str = "20260101000000000001") -> messages.Publish:
    return messages.Publish("test.echo", ["hi"], "car-*", "glob", jid)


def test_publish_round_trip_and_replay_guard() -> None:
    key = generate_key_string()
    sender, receiver = Crypticle(key), Crypticle(key)
    frame = messages.publish_frame(job(), aes=sender, serial=1, master_key=MASTER)
    got = messages.open_publish(frame, aes=receiver, master_pub=MASTER.public_key())
    assert (got.fun, got.arg, got.tgt, got.jid) == ("test.echo", ["hi"], "car-*", job().jid)
    with pytest.raises(ReplayError):
        messages.open_publish(frame, aes=receiver, master_pub=MASTER.public_key())


def test_publish_signed_by_another_key_is_forged() -> None:
    key = generate_key_string()
    frame = messages.publish_frame(job(), aes=Crypticle(key), serial=1, master_key=OTHER)
    with pytest.raises(messages.ForgedPublish):
        messages.open_publish(frame, aes=Crypticle(key), master_pub=MASTER.public_key())


def test_tampered_publish_is_forged() -> None:
    key = generate_key_string()
    frame = messages.publish_frame(job(), aes=Crypticle(key), serial=1, master_key=MASTER)
    env = msgpack.unpackb(frame, raw=True)
    load = bytearray(env[b"load"])
    load[20] ^= 1
    env[b"load"] = bytes(load)
    with pytest.raises(messages.ForgedPublish):
        messages.open_publish(msgpack.packb(env), aes=Crypticle(key), master_pub=MASTER.public_key())


def test_publish_under_rotated_key_is_authentication_not_forgery() -> None:
    frame = messages.publish_frame(job(), aes=Crypticle(generate_key_string()), serial=1,
                                   master_key=MASTER)
    with pytest.raises(AuthenticationError) as info:
        messages.open_publish(frame, aes=Crypticle(generate_key_string()),
                              master_pub=MASTER.public_key())
    assert not isinstance(info.value, messages.ForgedPublish)


def test_return_round_trip() -> None:
    ret = messages.JobReturn("car-0001", "1" * 20, "test.ping", True, fun_args=[])
    assert messages.parse_return(wire(ret.load())) == ret  # type: ignore[arg-type]


@pytest.mark.parametrize("frame", [b"", b"\xc1", b"\x92\x01", b"\xa5hi", b"\xdf\xff\xff\xff\xff"])
def test_garbage_frames_are_decode_errors(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        messages.open_publish(frame, aes=Crypticle(generate_key_string()),
                              master_pub=MASTER.public_key())


def test_oversized_frame_refused_before_decoding() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        codec.unpackb(b"\x00" * 1001, max_size=1000)


def test_token_cache_is_bound_to_the_key_object() -> None:
    session, tok = sessions()
    cache: dict[tuple[str, bytes], rsa.RSAPublicKey] = {}
    minion_pub = MINION.public_key()

    def request() -> dict[str, object]:
        return messages.aes_request({}, minion_id="car-0001", session=session, tok=tok,
                                    nonce=messages.new_nonce())

    messages.open_aes_request(request(), session_for=lambda _id: session,
                              pub_for=lambda _id: minion_pub, verified=cache)
    assert cache[("car-0001", tok)] is minion_pub
    # The key on file changed (deleted and re-accepted with another key): checked again.
    with pytest.raises(AuthenticationError, match="token"):
        messages.open_aes_request(request(), session_for=lambda _id: session,
                                  pub_for=lambda _id: OTHER.public_key(), verified=cache)
