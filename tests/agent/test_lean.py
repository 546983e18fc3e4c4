"""autopi_agent.lean: the agent's entry loads asyncio and hashlib without CPython's OpenSSL."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.fleet import REPO


def probe(code: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


REPORT = ("import json, sys, hashlib, hmac;"
          "print(json.dumps({'ssl': 'ssl' in sys.modules, '_hashlib': '_hashlib' in sys.modules,"
          " 'sha256': hashlib.sha256(b'abc').hexdigest(),"
          " 'hmac': hmac.new(b'k', b'm', 'sha224').hexdigest(), 'extra': EXTRA}))")


def test_the_agent_entry_keeps_ssl_and_hashlib_binding_out() -> None:
    got = probe("import autopi_agent.cli; import asyncio; EXTRA = asyncio.sslproto.ssl is None;"
                + REPORT)
    assert got["ssl"] is False and got["_hashlib"] is False
    assert got["extra"] is True
    # CPython's own hash code gives the same answers.
    assert got["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert got["hmac"] == "e671a34e8cea889324905af2e923d564cddef30e77925c8982df122e"


def test_a_later_import_ssl_still_works() -> None:
    got = probe("import autopi_agent.cli, ssl; EXTRA = ssl.OPENSSL_VERSION.split()[0];" + REPORT)
    assert got["ssl"] is True and got["extra"] == "OpenSSL"


def test_nothing_changes_when_asyncio_was_loaded_first() -> None:
    got = probe("import asyncio, autopi_agent.lean as lean;"
                "EXTRA = lean.defer_stdlib_openssl();" + REPORT)
    assert got["extra"] is False
    assert got["ssl"] is True  # asyncio loaded it before the agent's code ran


def test_a_python_without_its_own_hash_code_gets_hashlib_from_openssl() -> None:
    # Some distributions build CPython without _sha256 & co.: hashlib must not lose sha256.
    got = probe("import sys\nfor m in ('_md5', '_sha1', '_sha256', '_sha512'): sys.modules[m] = None\n"
                "import autopi_agent.lean as lean; EXTRA = lean.defer_stdlib_openssl();" + REPORT)
    assert got["extra"] is False and got["_hashlib"] is True
    assert got["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
