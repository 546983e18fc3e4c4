"""Exceptions of the wire protocol package.

ProtoError
 ├── DecodeError (ValueError)        bytes that are not a valid message
 ├── AuthenticationError             an HMAC, signature, nonce or token did not verify
 │    └── ReplayError                a publish whose serial is not newer than the last
 ├── UnsupportedAlgorithm (ValueError)
 └── KeyFormatError (ValueError)     a PEM that is not an RSA key
"""


class ProtoError(Exception):
    """Root of every error raised by autopi_proto."""


class DecodeError(ProtoError, ValueError):
    """A frame is not valid msgpack, is too large, or has the wrong shape."""


class AuthenticationError(ProtoError):
    """A MAC, signature, nonce or token failed to verify."""


class ReplayError(AuthenticationError):
    """A publish carried a serial that is not newer than the last one accepted."""


class UnsupportedAlgorithm(ProtoError, ValueError):
    """An encryption or signing algorithm name this implementation does not accept."""


class KeyFormatError(ProtoError, ValueError):
    """A PEM string is not a usable RSA key."""
