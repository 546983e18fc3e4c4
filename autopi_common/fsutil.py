"""Crash-safe file writes: a power cut leaves either the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["create_exclusive", "ensure_dir", "fsync_dir", "write_atomic"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory entry (a rename or unlink in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(directory: Path, data: bytes, mode: int) -> Path:
    """A fully written, fsynced hidden temp file in ``directory`` with exactly ``mode``."""
    # A short fixed-length name keeps the temp file legal even when the target's name is
    # near the 255-byte limit; the leading dot keeps it out of directory listings.
    tmp = directory / f".tmp-{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode & 0o777)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed the create mode
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically; the file never exists with a wider mode."""
    target = Path(path)
    tmp = _write_temp(target.parent, data, mode)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def create_exclusive(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` with ``data`` atomically unless it exists; False when it already did.

    Two processes racing to create the same key file end up agreeing on one of them.
    """
    target = Path(path)
    tmp = _write_temp(target.parent, data, mode)
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    fsync_dir(target.parent)
    return True


def ensure_dir(path: str | os.PathLike[str], mode: int = 0o700) -> Path:
    """Create ``path`` (and missing parents) and leave the leaf with exactly ``mode``."""
    target = Path(path)
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            target.mkdir(mode=mode)
            fsync_dir(target.parent)
    if not target.is_dir():
        raise NotADirectoryError(f"{target} is not a directory")
    if target.stat().st_mode & 0o7777 != mode:
        os.chmod(target, mode)
    return target
