"""The memory floor: the agent's runtime libraries loaded and idle, without any agent code.

The agent's idle RSS budget only means something next to what the libraries it must use
cost on their own in the same interpreter: asyncio, pyzmq with the agent's two sockets
connected, cryptography (RSA, AES, HMAC), msgpack, PyYAML, structlog, and sqlite3 with a
WAL database open. The libraries are loaded as the agent loads them, with CPython's own
OpenSSL binding kept out (autopi_agent/lean.py). `autopi-agent serve` minus this figure is
what the agent's own code, state and threads add.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.proc import REPO, project_env

# Run in a fresh interpreter (the same one the agent uses); prints its VmRSS in KiB.
_PROBE = r"""
from autopi_agent.lean import defer_stdlib_openssl
defer_stdlib_openssl()
import asyncio, sqlite3, sys, tempfile
import msgpack, structlog, yaml, zmq, zmq.asyncio
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

async def idle(settle):
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect("tcp://127.0.0.1:9")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect("tcp://127.0.0.1:9")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key.public_key().public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    blob = key.public_key().encrypt(b"x" * 32, padding.OAEP(
        padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))
    key.decrypt(blob, padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))
    enc = Cipher(algorithms.AES(b"k" * 32), modes.CBC(b"i" * 16)).encryptor()
    enc.update(b"p" * 64) + enc.finalize()
    mac = hmac.HMAC(b"m" * 32, hashes.SHA256())
    mac.update(msgpack.packb({"a": 1}))
    mac.finalize()
    yaml.safe_load("a: 1")
    structlog.get_logger("floor").debug("floor.idle")
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(f"{tmp}/spool.sqlite")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
        db.commit()
        await asyncio.to_thread(len, b"")  # the default executor's worker thread, as the agent's
        await asyncio.sleep(settle)
        print(rss_kib())
        db.close()
    sub.close(0)
    dealer.close(0)
    ctx.term()

asyncio.run(idle(float(sys.argv[1])))
"""


def floor_rss_mib(python: Path | None = None, settle: float = 2.0) -> float:
    """RSS (MiB) of an interpreter holding only the agent's runtime libraries, idle."""
    exe = str(python or sys.executable)
    out = subprocess.run([exe, "-c", _PROBE, str(settle)], capture_output=True, text=True,
                         env=project_env(), cwd=REPO, timeout=120, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


if __name__ == "__main__":
    print(f"{floor_rss_mib():.1f} MiB")
