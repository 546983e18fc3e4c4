"""File trees per environment (``file_roots``, ``pillar_roots``): the one module here that reads disk.

Paths are relative, ``/``-separated, as Salt's fileserver sees them (``apache/init.sls``).
A path that is absolute, climbs out with ``..``, holds a NUL, or resolves (through a
symlink) outside its root is refused: it is simply not found. Where several roots hold one
path, the first root wins, as in Salt.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["DEFAULT_HASH_TYPE", "FileRoots", "clean_relpath", "sls_names"]

DEFAULT_HASH_TYPE = "sha256"


def clean_relpath(path: str) -> str | None:
    """``path`` normalised (``a//b/./c`` is ``a/b/c``), or None if it is not a safe relative path."""
    if not isinstance(path, str) or not path or "\x00" in path or "\\" in path:
        return None
    path = path.removeprefix("salt://")
    if path.startswith("/"):
        return None
    normal = posixpath.normpath(path)
    if normal in (".", "..") or normal.startswith("../") or normal.startswith("/"):
        return None
    return normal


def sls_names(files: Sequence[str]) -> list[str]:
    """The SLS names the files make: ``a/b.sls`` is ``a.b``, ``a/init.sls`` is ``a``."""
    states = set()
    for path in files:
        if path.endswith("/init.sls"):
            states.add(path[: -len("/init.sls")].replace("/", "."))
        elif path.endswith(".sls"):
            states.add(path[: -len(".sls")].replace("/", "."))
    return sorted(states)


class FileRoots:
    """Read-only access to ``{env: [dir, ...]}`` trees, with a hash cache keyed by mtime."""

    def __init__(self, roots: Mapping[str, Sequence[str | os.PathLike[str]]]) -> None:
        self.roots = {str(env): [Path(root) for root in dirs] for env, dirs in roots.items()}
        self._hashes: dict[tuple[str, str], tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    def envs(self) -> list[str]:
        """The environment names, sorted."""
        return sorted(self.roots)

    def find(self, env: str, path: str) -> Path | None:
        """The file ``path`` in ``env`` (first root wins), or None when absent or unsafe."""
        rel = clean_relpath(path)
        if rel is None:
            return None
        for root in self.roots.get(env, []):
            candidate = root / rel
            if candidate.is_file() and _inside(root, candidate):
                return candidate
        return None

    def read_text(self, env: str, path: str) -> str | None:
        """The text of ``path`` in ``env``, or None when there is no such file."""
        found = self.find(env, path)
        return found.read_text(encoding="utf-8") if found is not None else None

    def list_files(self, env: str, prefix: str = "") -> list[str]:
        """Every file path in ``env`` (sorted), optionally only those under ``prefix``."""
        return sorted(path for path in self._walk(env)[0] if path.startswith(prefix.strip("/")))

    def list_dirs(self, env: str, prefix: str = "") -> list[str]:
        """Every directory path in ``env`` (sorted; the root itself is ``""``)."""
        return sorted(path for path in self._walk(env)[1] if path.startswith(prefix.strip("/")))

    def list_emptydirs(self, env: str, prefix: str = "") -> list[str]:
        """The directories in ``env`` that hold nothing at all."""
        return sorted(path for path in self._walk(env)[2] if path.startswith(prefix.strip("/")))

    def list_states(self, env: str) -> list[str]:
        """The SLS names available in ``env``."""
        return sls_names(self.list_files(env))

    def hash_file(self, env: str, path: str, hash_type: str = DEFAULT_HASH_TYPE) -> str | None:
        """The hex digest of ``path`` in ``env``, or None when it is absent; cached by mtime."""
        found = self.find(env, path)
        if found is None:
            return None
        stat = found.stat()
        key = (str(found), hash_type)
        with self._lock:
            cached = self._hashes.get(key)
        if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
            return cached[2]
        digest = hash_bytes(found.read_bytes(), hash_type)
        with self._lock:
            self._hashes[key] = (stat.st_mtime_ns, stat.st_size, digest)
        return digest

    def _walk(self, env: str) -> tuple[set[str], set[str], set[str]]:
        files: set[str] = set()
        dirs: set[str] = set()
        empty: set[str] = set()
        for root in self.roots.get(env, []):
            if not root.is_dir():
                continue
            for here, subdirs, names in os.walk(root):
                rel = Path(here).relative_to(root).as_posix()
                rel = "" if rel == "." else rel
                dirs.add(rel)
                if not subdirs and not names and rel:
                    empty.add(rel)
                for name in names:
                    full = Path(here) / name
                    if full.is_file() and _inside(root, full):
                        files.add(posixpath.join(rel, name) if rel else name)
        return files, dirs, empty - {d for d in empty if any(f.startswith(d + "/") for f in files)}


def hash_bytes(data: bytes, hash_type: str = DEFAULT_HASH_TYPE) -> str:
    """The hex digest of ``data`` with Salt's ``hash_type`` name (sha256, md5 ...)."""
    return hashlib.new(hash_type, data).hexdigest()


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True
