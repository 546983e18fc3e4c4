"""Our codec and crypto against Salt's own code, run in the Salt peer venv."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopi_proto import codec, rsa
from autopi_proto.crypticle import Crypticle, generate_key_string
from tests.saltvenv import salt_venv

pytestmark = pytest.mark.salt
ORACLE = Path(__file__).with_name("salt_oracle.py")


class Oracle:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def ask(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        assert "error" not in answer, answer
        return answer


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    python = salt_venv() / "bin" / "python"
    proc = subprocess.Popen([str(python), str(ORACLE)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        yield Oracle(proc)
    finally:
        assert proc.stdin and proc.stdout
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(2048)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


VALUE = {"fun": "test.echo", "arg": ["hi", {"__kwarg__": True, "x": 1}], "n": [1, 2.5, None]}


def test_salt_reads_our_crypticle(oracle: Oracle) -> None:
    key_string = generate_key_string()
    blob = Crypticle(key_string).dumps(VALUE, nonce="a" * 32)
    assert oracle.ask(op="crypticle_loads", key=key_string, blob=b64(blob),
                      nonce="a" * 32)["value"] == VALUE


def test_we_read_salt_crypticle(oracle: Oracle) -> None:
    key_string = generate_key_string()
    blob = oracle.ask(op="crypticle_dumps", key=key_string, value=VALUE)["blob"]
    assert Crypticle(key_string).loads(base64.b64decode(blob)) == VALUE


def test_x931_signature_is_byte_identical(oracle: Oracle, key: rsa.RSAPrivateKey) -> None:
    pem = rsa.private_pem(key).decode()
    for message in (b"salt", b"0" * 64):
        theirs = base64.b64decode(oracle.ask(op="x931_sign", pem=pem, data=b64(message))["sig"])
        assert rsa.x931_sign(key, message) == theirs
        assert rsa.x931_recover(key.public_key(), theirs) == message


def test_salt_recovers_our_x931(oracle: Oracle, key: rsa.RSAPrivateKey) -> None:
    pub = rsa.public_pem(key).decode()
    sig = rsa.x931_sign(key, b"deadbeef" * 8)
    got = oracle.ask(op="x931_recover", pem=pub, sig=b64(sig))["data"]
    assert base64.b64decode(got) == b"deadbeef" * 8


def test_fingerprint_matches_pem_finger(oracle: Oracle, key: rsa.RSAPrivateKey) -> None:
    pem = rsa.public_pem(key).decode()
    body = "".join(pem.splitlines(True)[1:-1])
    assert rsa.fingerprint(pem) == oracle.ask(op="finger", body=body)["finger"]


@pytest.mark.parametrize("value", [VALUE, {"a": "é", "b": [True, False]}, [1, -5, 2**40], "x"])
def test_msgpack_bytes_identical(oracle: Oracle, value: Any) -> None:
    packed = codec.packb(value)
    assert base64.b64decode(oracle.ask(op="dumps", value=value)["packed"]) == packed
    assert oracle.ask(op="loads", packed=b64(packed))["value"] == value


@pytest.mark.parametrize("algo", rsa.ENCRYPTION_ALGORITHMS)
def test_oaep_both_ways(oracle: Oracle, key: rsa.RSAPrivateKey, algo: str) -> None:
    pem_priv, pem_pub = rsa.private_pem(key).decode(), rsa.public_pem(key).decode()
    ours = rsa.encrypt(key.public_key(), b"secret", algo)
    assert base64.b64decode(oracle.ask(op="oaep_decrypt", pem=pem_priv, data=b64(ours),
                                       algo=algo)["data"]) == b"secret"
    theirs = oracle.ask(op="oaep_encrypt", pem=pem_pub, data=b64(b"secret"), algo=algo)["data"]
    assert rsa.decrypt(key, base64.b64decode(theirs), algo) == b"secret"


@pytest.mark.parametrize("algo", rsa.SIGNING_ALGORITHMS)
def test_signatures_both_ways(oracle: Oracle, key: rsa.RSAPrivateKey, algo: str) -> None:
    pem_priv, pem_pub = rsa.private_pem(key).decode(), rsa.public_pem(key).decode()
    sig = rsa.sign(key, b"payload", algo)
    assert oracle.ask(op="verify", pem=pem_pub, data=b64(b"payload"), sig=b64(sig), algo=algo)["ok"]
    theirs = oracle.ask(op="sign", pem=pem_priv, data=b64(b"payload"), algo=algo)["sig"]
    assert rsa.verify(key.public_key(), b"payload", base64.b64decode(theirs), algo)
