"""Salt's symmetric message cipher: AES-192-CBC then HMAC-SHA256 (encrypt-then-MAC)."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from autopi_proto import codec
from autopi_proto.errors import AuthenticationError, DecodeError, ReplayError

AES_KEY_BYTES = 24  # Salt's default key_size of 192 bits
MAC_KEY_BYTES = 32
BLOCK = 16
MAC_SIZE = 32
PICKLE_PAD = b"pickle::"
NONCE_LEN = 32  # uuid4().hex


def generate_key_string() -> str:
    """A fresh key string: base64 of 24 AES-key bytes followed by 32 HMAC-key bytes."""
    return base64.b64encode(secrets.token_bytes(AES_KEY_BYTES + MAC_KEY_BYTES)).decode()


class Crypticle:
    """Encrypts and authenticates messages with one key string.

    ``serial`` is the last publish serial accepted; ``loads`` enforces that each message
    carrying a serial is newer (the replay guard for publishes).
    """

    __slots__ = ("key_string", "_aes_key", "_mac_key", "serial")

    def __init__(self, key_string: str | bytes, serial: int = 0) -> None:
        if isinstance(key_string, bytes):
            key_string = key_string.decode()
        try:
            raw = base64.b64decode(key_string, validate=True)
        except (binascii.Error, ValueError) as err:
            raise DecodeError("the key string is not base64") from err
        if len(raw) != AES_KEY_BYTES + MAC_KEY_BYTES:
            raise DecodeError(f"the key string holds {len(raw)} bytes, expected 56")
        self.key_string = key_string
        self._aes_key = raw[:AES_KEY_BYTES]
        self._mac_key = raw[AES_KEY_BYTES:]
        self.serial = serial

    def encrypt(self, data: bytes) -> bytes:
        """IV ‖ AES-CBC(PKCS7(data)) ‖ HMAC-SHA256(IV ‖ ciphertext)."""
        padder = sym_padding.PKCS7(BLOCK * 8).padder()
        padded = padder.update(data) + padder.finalize()
        iv = secrets.token_bytes(BLOCK)
        encryptor = Cipher(algorithms.AES(self._aes_key), modes.CBC(iv)).encryptor()
        body = iv + encryptor.update(padded) + encryptor.finalize()
        return body + self._mac(body)

    def _mac(self, body: bytes) -> bytes:
        # cryptography's HMAC, not hmac.digest: as fast as OpenSSL's, without making the
        # agent load the stdlib's OpenSSL binding (autopi_agent/lean.py).
        mac = crypto_hmac.HMAC(self._mac_key, hashes.SHA256())
        mac.update(body)
        return mac.finalize()

    def decrypt(self, blob: bytes) -> bytes:
        """Check the MAC in constant time, then decrypt; AuthenticationError if it fails."""
        if not isinstance(blob, (bytes, bytearray)) or len(blob) < BLOCK * 2 + MAC_SIZE:
            raise AuthenticationError("message too short to be authentic")
        blob = bytes(blob)
        body, mac = blob[:-MAC_SIZE], blob[-MAC_SIZE:]
        if not hmac.compare_digest(self._mac(body), mac):
            raise AuthenticationError("message authentication failed")
        iv, ciphertext = body[:BLOCK], body[BLOCK:]
        if len(ciphertext) % BLOCK:
            raise AuthenticationError("ciphertext is not a whole number of blocks")
        decryptor = Cipher(algorithms.AES(self._aes_key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        pad = padded[-1]
        if not 1 <= pad <= BLOCK:
            raise AuthenticationError("bad padding")
        return padded[:-pad]

    def dumps(self, obj: Any, nonce: str | None = None) -> bytes:
        """Serialise and encrypt; a reply to a v3 request starts with the request's nonce."""
        prefix = PICKLE_PAD + (nonce.encode() if nonce else b"")
        return self.encrypt(prefix + codec.packb(obj))

    def loads(self, blob: bytes, nonce: str | None = None, *, max_size: int | None = None) -> Any:
        """Decrypt and deserialise; check the nonce and the serial when present."""
        data = self.decrypt(blob)
        if not data.startswith(PICKLE_PAD):
            raise DecodeError("decrypted message lacks the payload marker")
        data = data[len(PICKLE_PAD):]
        if nonce:
            if data[:NONCE_LEN] != nonce.encode():
                raise AuthenticationError("reply nonce does not match the request")
            data = data[NONCE_LEN:]
        payload = codec.unpackb(data, max_size=max_size)
        if isinstance(payload, dict) and "serial" in payload:
            serial = payload.pop("serial")
            if not isinstance(serial, int) or serial <= self.serial:
                raise ReplayError(f"serial {serial!r} is not newer than {self.serial}")
            self.serial = serial
        return payload
