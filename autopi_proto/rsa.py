"""RSA as Salt uses it: OAEP encryption, PKCS#1 v1.5 signatures, X9.31 raw signing, fingerprints."""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as CryptoUnsupported
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from autopi_proto.errors import AuthenticationError, KeyFormatError, UnsupportedAlgorithm

OAEP_SHA1: Final = "OAEP-SHA1"
OAEP_SHA224: Final = "OAEP-SHA224"
PKCS1V15_SHA1: Final = "PKCS1v15-SHA1"
PKCS1V15_SHA224: Final = "PKCS1v15-SHA224"
ENCRYPTION_ALGORITHMS: Final = (OAEP_SHA1, OAEP_SHA224)
SIGNING_ALGORITHMS: Final = (PKCS1V15_SHA1, PKCS1V15_SHA224)
DEFAULT_ENCRYPTION: Final = OAEP_SHA224
DEFAULT_SIGNING: Final = PKCS1V15_SHA224

_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "SHA1": hashes.SHA1,
    "SHA224": hashes.SHA224,
}

__all__ = [
    "RSAPrivateKey",
    "RSAPublicKey",
    "generate_private_key",
    "private_pem",
    "public_pem",
    "load_private",
    "load_public",
    "clean_pem",
    "fingerprint",
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "x931_sign",
    "x931_recover",
]


def generate_private_key(bits: int = 2048) -> RSAPrivateKey:
    """A new RSA key with e = 65537."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key: RSAPrivateKey) -> bytes:
    """PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"), the form Salt writes."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_pem(key: RSAPrivateKey | RSAPublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY"), the form Salt sends and stores."""
    pub = key.public_key() if isinstance(key, RSAPrivateKey) else key
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _as_bytes(pem: str | bytes) -> bytes:
    return pem.encode() if isinstance(pem, str) else pem


def load_private(pem: str | bytes, *, own: bool = False) -> RSAPrivateKey:
    """Parse an unencrypted RSA private key in PEM.

    ``own`` skips the expensive consistency check of the key's numbers (tens of ms on a Pi):
    only for keys this program generated and keeps in a 0400 file.
    """
    try:
        key = serialization.load_pem_private_key(_as_bytes(pem), password=None,
                                                 unsafe_skip_rsa_key_validation=own)
    except (ValueError, TypeError, CryptoUnsupported) as err:
        raise KeyFormatError(f"not an RSA private key: {err}") from err
    if not isinstance(key, RSAPrivateKey):
        raise KeyFormatError("the private key is not RSA")
    return key


def load_public(pem: str | bytes) -> RSAPublicKey:
    """Parse an RSA public key in PEM (SubjectPublicKeyInfo or PKCS#1)."""
    data = _as_bytes(pem).strip()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, CryptoUnsupported) as err:
        raise KeyFormatError(f"not an RSA public key: {err}") from err
    if not isinstance(key, RSAPublicKey):
        raise KeyFormatError("the public key is not RSA")
    return key


def clean_pem(pem: str | bytes) -> str:
    """A PEM with Unix line ends and no surrounding whitespace, as Salt compares keys."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    return "\n".join(text.strip().splitlines())


def fingerprint(pem: str | bytes, hash_name: str = "sha256") -> str:
    """Salt's ``pem_finger``: a hash of the PEM body lines, as colon-separated hex pairs."""
    lines = [line for line in _as_bytes(pem).replace(b"\r\n", b"\n").splitlines(True)
             if line.strip()]
    body = b"".join(lines[1:-1])
    digest = hashlib.new(hash_name, body).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _split(algorithm: str, allowed: tuple[str, ...]) -> type[hashes.HashAlgorithm]:
    if algorithm not in allowed:
        raise UnsupportedAlgorithm(f"unsupported algorithm {algorithm!r}; use one of {allowed}")
    return _HASHES[algorithm.split("-", 1)[1]]


def encrypt(pub: RSAPublicKey, data: bytes, algorithm: str = DEFAULT_ENCRYPTION) -> bytes:
    """OAEP (MGF1 with the same hash) encryption to a public key."""
    hash_cls = _split(algorithm, ENCRYPTION_ALGORITHMS)
    return pub.encrypt(
        data, padding.OAEP(mgf=padding.MGF1(algorithm=hash_cls()), algorithm=hash_cls(), label=None)
    )


def decrypt(key: RSAPrivateKey, data: bytes, algorithm: str = DEFAULT_ENCRYPTION) -> bytes:
    """OAEP decryption; AuthenticationError when the ciphertext is not for this key."""
    hash_cls = _split(algorithm, ENCRYPTION_ALGORITHMS)
    try:
        return key.decrypt(
            data,
            padding.OAEP(mgf=padding.MGF1(algorithm=hash_cls()), algorithm=hash_cls(), label=None),
        )
    except (ValueError, TypeError) as err:
        raise AuthenticationError("RSA decryption failed") from err


def sign(key: RSAPrivateKey, data: bytes, algorithm: str = DEFAULT_SIGNING) -> bytes:
    """PKCS#1 v1.5 signature."""
    hash_cls = _split(algorithm, SIGNING_ALGORITHMS)
    return key.sign(data, padding.PKCS1v15(), hash_cls())


def verify(pub: RSAPublicKey, data: bytes, signature: bytes,
           algorithm: str = DEFAULT_SIGNING) -> bool:
    """True when ``signature`` is a valid PKCS#1 v1.5 signature of ``data``."""
    hash_cls = _split(algorithm, SIGNING_ALGORITHMS)
    if not isinstance(signature, (bytes, bytearray)) or not isinstance(data, (bytes, bytearray)):
        return False
    try:
        pub.verify(bytes(signature), bytes(data), padding.PKCS1v15(), hash_cls())
    except (InvalidSignature, ValueError):
        return False
    return True


# X9.31 "private-key encryption", as OpenSSL's RSA_private_encrypt(RSA_X931_PADDING) does it.
# cryptography has no such padding, so the block is built here and the raw RSA operation
# is done with Python integers (the values are small and this runs once per auth).

def _x931_pad(message: bytes, size: int) -> bytes:
    fill = size - len(message) - 2
    if fill < 0:
        raise ValueError("message too long for X9.31 padding")
    if fill == 0:
        return b"\x6a" + message + b"\xcc"
    return b"\x6b" + b"\xbb" * (fill - 1) + b"\xba" + message + b"\xcc"


def x931_sign(key: RSAPrivateKey, message: bytes) -> bytes:
    """X9.31-padded raw RSA with the private key (Salt's ``PrivateKey.encrypt``)."""
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    size = (n.bit_length() + 7) // 8
    block = int.from_bytes(_x931_pad(message, size), "big")
    # Chinese remainder theorem: about four times faster than pow(block, d, n).
    m1 = pow(block, numbers.dmp1, numbers.p)
    m2 = pow(block, numbers.dmq1, numbers.q)
    signature = m2 + numbers.q * ((numbers.iqmp * (m1 - m2)) % numbers.p)
    # X9.31 picks the smaller of s and n - s.
    signature = min(signature, n - signature)
    return signature.to_bytes(size, "big")


def x931_recover(pub: RSAPublicKey, signature: bytes) -> bytes:
    """Recover the message from an X9.31 signature (Salt's ``PublicKey.decrypt``)."""
    numbers = pub.public_numbers()
    n, e = numbers.n, numbers.e
    size = (n.bit_length() + 7) // 8
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != size:
        raise AuthenticationError("X9.31 signature has the wrong length")
    value = int.from_bytes(signature, "big")
    if value >= n:
        raise AuthenticationError("X9.31 signature out of range")
    block_int = pow(value, e, n)
    if block_int & 0xF != 0xC:
        block_int = n - block_int
    block = block_int.to_bytes(size, "big")
    return _x931_unpad(block)


def _x931_unpad(block: bytes) -> bytes:
    if block[-1] != 0xCC:
        raise AuthenticationError("X9.31 trailer missing")
    if block[0] == 0x6A:
        return block[1:-1]
    if block[0] != 0x6B:
        raise AuthenticationError("X9.31 header missing")
    index = 1
    while index < len(block) - 1 and block[index] == 0xBB:
        index += 1
    if block[index] != 0xBA:
        raise AuthenticationError("X9.31 padding malformed")
    return block[index + 1:-1]
