"""msgpack with Salt's rules: raw strings out, UTF-8-decodable bytes back to str on the way in."""

from __future__ import annotations

import datetime
from typing import Any

import msgpack

from autopi_proto.errors import DecodeError

DATETIME_EXT = 78
CONSTANT_EXT = 79
_DATETIME_FORMAT = "%Y%m%dT%H:%M:%S.%f"


def _default(obj: Any) -> Any:
    if isinstance(obj, (datetime.datetime, datetime.date)):
        return msgpack.ExtType(DATETIME_EXT, obj.strftime(_DATETIME_FORMAT).encode())
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == DATETIME_EXT:
        try:
            return datetime.datetime.strptime(data.decode(), _DATETIME_FORMAT)
        except (UnicodeDecodeError, ValueError) as err:
            raise DecodeError(f"bad datetime extension value: {data[:40]!r}") from err
    if code == CONSTANT_EXT:
        # Salt's named constants (e.g. salt.defaults.NOT_SET): keep the name/value pair.
        name, value = msgpack.unpackb(data, raw=False)
        return {"__constant__": name, "value": value}
    return msgpack.ExtType(code, data)


def packb(obj: Any) -> bytes:
    """Serialise as Salt does: ``use_bin_type=False`` so str and bytes both go out raw."""
    try:
        return msgpack.packb(obj, use_bin_type=False, default=_default)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as err:
        raise DecodeError(f"cannot serialise message: {err}") from err


def unpackb(data: bytes, *, max_size: int | None = None, decode_strs: bool = True) -> Any:
    """Deserialise a Salt frame; raise DecodeError for anything that is not one.

    With ``decode_strs`` every bytes value that is valid UTF-8 becomes a str, as Salt's
    ``payload.loads`` does; values that are not stay bytes (ciphertexts, signatures).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if max_size is not None and len(data) > max_size:
        raise DecodeError(f"frame of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        obj = msgpack.unpackb(
            bytes(data), raw=True, use_list=True, strict_map_key=False, ext_hook=_ext_hook
        )
    except DecodeError:
        raise
    except Exception as err:  # msgpack raises several unrelated types for bad input
        raise DecodeError(f"not a msgpack message: {type(err).__name__}: {err}") from err
    return decode_embedded(obj) if decode_strs else obj


def decode_embedded(obj: Any) -> Any:
    """Turn UTF-8-decodable bytes (keys and values, recursively) into str."""
    if isinstance(obj, bytes):
        try:
            return obj.decode()
        except UnicodeDecodeError:
            return obj
    if isinstance(obj, dict):
        return {decode_embedded(k): decode_embedded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_embedded(v) for v in obj]
    return obj
