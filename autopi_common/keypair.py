"""An RSA key pair on disk (private 0400, public 0644), created once and checked on every load."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from autopi_common import CommonError
from autopi_common.fsutil import create_exclusive, ensure_dir, write_atomic
from autopi_proto import rsa
from autopi_proto.errors import KeyFormatError

__all__ = ["KeyFileError", "KeyPair", "load_or_create_keypair", "read_public"]

log = structlog.get_logger(__name__)

PRIVATE_MODE = 0o400
PUBLIC_MODE = 0o644
DIR_MODE = 0o700


class KeyFileError(CommonError):
    """A key file is readable by others, unreadable, or not an RSA key."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A loaded key pair and where it lives."""

    private_key: rsa.RSAPrivateKey
    public_pem: str
    private_path: Path
    public_path: Path

    def fingerprint(self, hash_name: str = "sha256") -> str:
        """Salt's fingerprint of the public key (what ``master_finger`` pins)."""
        return rsa.fingerprint(self.public_pem, hash_name)


def _read_private(path: Path) -> rsa.RSAPrivateKey:
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        raise KeyFileError(f"{path}: not a regular file; remove it to create a new key")
    if mode & 0o077:
        raise KeyFileError(
            f"{path}: private key is accessible by group or others (mode "
            f"{stat.S_IMODE(mode):04o}); run 'chmod 400 {path}' and check it was not copied"
        )
    try:
        # Private to us (checked above), so the costly number check can be skipped.
        return rsa.load_private(path.read_bytes(), own=True)
    except (OSError, KeyFormatError) as err:
        raise KeyFileError(f"{path}: cannot use the private key: {err}") from err


def read_public(path: Path) -> str | None:
    """The PEM text of a public key file, or None when the file is absent."""
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise KeyFileError(f"{path}: cannot read the public key: {err}") from err


def _create(private_path: Path, keysize: int) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(keysize)
    if not create_exclusive(private_path, rsa.private_pem(key), PRIVATE_MODE):
        return _read_private(private_path)  # another process made one first: use it
    log.info("keys.created", path=str(private_path), keysize=keysize)
    return key


def load_or_create_keypair(private_path: Path, public_path: Path, keysize: int) -> KeyPair:
    """Load the pair, creating it on first use; the public file is rewritten if missing or stale.

    The directory is created (or tightened) to 0700. A private key that others can read,
    or that does not parse, is refused with :class:`KeyFileError` rather than replaced.
    """
    ensure_dir(private_path.parent, DIR_MODE)
    if private_path.exists() or private_path.is_symlink():
        key = _read_private(private_path)
    else:
        key = _create(private_path, keysize)
    pem = rsa.public_pem(key).decode("ascii")
    on_disk = read_public(public_path)
    if on_disk is None or rsa.clean_pem(on_disk) != rsa.clean_pem(pem):
        if on_disk is not None:
            log.warning("keys.public_rewritten", path=str(public_path))
        write_atomic(public_path, pem.encode("ascii"), PUBLIC_MODE)
    elif stat.S_IMODE(os.stat(public_path).st_mode) != PUBLIC_MODE:
        os.chmod(public_path, PUBLIC_MODE)
    return KeyPair(key, pem, private_path, public_path)
