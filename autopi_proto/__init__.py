"""The wire protocol both sides speak (Salt 3007/3008 over ZeroMQ): pure values in, values out.

Nothing here opens a socket or a file. Modules:

- ``codec``: msgpack with Salt's rules.
- ``crypticle``: the shared/session symmetric cipher (AES-CBC + HMAC-SHA256).
- ``rsa``: keys, OAEP, PKCS#1 v1.5 signatures, X9.31 private-key encryption, fingerprints.
- ``messages``: request, reply and publish envelopes.
- ``targeting``: which minions a target selects.
- ``jid``: job ids.
"""
