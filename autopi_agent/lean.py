"""Keep CPython's OpenSSL bindings (``ssl``, ``_hashlib``) out of the agent process.

The agent does all its cryptography through the ``cryptography`` package, which carries its
own OpenSSL. CPython's asyncio still imports ``ssl`` when it loads (for TLS transports the
agent never opens: ZeroMQ does the networking), and hashlib loads ``_hashlib``; each maps
the system's libssl/libcrypto into the process. On an idle agent that is about 4 MiB of
resident memory (measured in bench/RESULTS.md), paid for nothing on a 1 GiB dongle.

:func:`defer_stdlib_openssl` loads asyncio, hashlib and hmac with those two modules
hidden, then un-hides them: asyncio keeps ``ssl = None`` (so ``loop.create_connection(ssl=…)``
would fail in this process), hashlib and hmac use CPython's built-in SHA-1/SHA-2/SHA-3/
BLAKE2/MD5 code, and any later ``import ssl`` (an https download, say) works as usual and
only then pays for libssl. It does nothing when one of those modules is already loaded,
so importing the agent's CLI in another program (a test run) changes nothing there.
"""

from __future__ import annotations

import sys

_HIDDEN = ("ssl", "_hashlib")
_LOADERS = ("asyncio", "hashlib", "hmac", *_HIDDEN)
# The constructors the agent and Salt's protocol need from hashlib.
_NEEDED_HASHES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")


def defer_stdlib_openssl() -> bool:
    """Load asyncio, hashlib and hmac without libssl/libcrypto; True if it did."""
    if any(name in sys.modules for name in _LOADERS):
        return False
    for name in _HIDDEN:
        sys.modules[name] = None  # type: ignore[assignment]  # import machinery: "absent"
    try:
        import asyncio  # noqa: F401  (its sslproto/base_events remember ssl = None)
        import hashlib
        import hmac  # noqa: F401  (remembers _hashlib as absent)
    finally:
        for name in _HIDDEN:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    if all(hasattr(hashlib, name) for name in _NEEDED_HASHES):
        return True
    # A CPython built without its own hash code (some distributions rely on OpenSSL for
    # them): load hashlib and hmac again, with OpenSSL this time.
    del sys.modules["hashlib"], sys.modules["hmac"]
    import hashlib  # noqa: F401, F811
    import hmac  # noqa: F401, F811
    return False
