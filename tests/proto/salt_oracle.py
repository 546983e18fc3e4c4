"""Runs inside the Salt peer venv: answers crypto/codec questions with Salt's own code.

Reads one JSON request per line on stdin, writes one JSON answer per line. Bytes travel as
base64. Used by tests/proto/test_salt_oracle.py to prove our codec and crypto match Salt.
"""

import base64
import json
import sys

import salt.crypt
import salt.payload
import salt.utils.crypt


def b(text):
    return base64.b64decode(text)


def e(data):
    return base64.b64encode(data).decode()


def answer(req):
    op = req["op"]
    if op == "crypticle_loads":
        crypticle = salt.crypt.Crypticle({}, req["key"])
        return {"value": crypticle.loads(b(req["blob"]), nonce=req.get("nonce"))}
    if op == "crypticle_dumps":
        crypticle = salt.crypt.Crypticle({}, req["key"])
        return {"blob": e(crypticle.dumps(req["value"], nonce=req.get("nonce")))}
    if op == "x931_sign":
        return {"sig": e(salt.crypt.PrivateKey(req["pem"].encode()).encrypt(b(req["data"])))}
    if op == "x931_recover":
        return {"data": e(salt.crypt.PublicKey(req["pem"].encode()).decrypt(b(req["sig"])))}
    if op == "finger":
        return {"finger": salt.utils.crypt.pem_finger(key=req["body"])}
    if op == "dumps":
        return {"packed": e(salt.payload.dumps(req["value"]))}
    if op == "loads":
        return {"value": salt.payload.loads(b(req["packed"]))}
    if op == "oaep_decrypt":
        key = salt.crypt.PrivateKey(req["pem"].encode())
        return {"data": e(key.decrypt(b(req["data"]), req["algo"]))}
    if op == "oaep_encrypt":
        pub = salt.crypt.PublicKey(req["pem"].encode())
        return {"data": e(pub.encrypt(b(req["data"]), req["algo"]))}
    if op == "verify":
        pub = salt.crypt.PublicKey(req["pem"].encode())
        return {"ok": pub.verify(b(req["data"]), b(req["sig"]), req["algo"])}
    if op == "sign":
        key = salt.crypt.PrivateKey(req["pem"].encode())
        return {"sig": e(key.sign(b(req["data"]), req["algo"]))}
    raise ValueError(op)


for line in sys.stdin:
    try:
        print(json.dumps(answer(json.loads(line))), flush=True)
    except Exception as exc:  # report, keep serving
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
