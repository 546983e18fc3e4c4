"""Where state files come from: local ``file_roots`` directories, or the master over 4506.

``FileClient`` is what the state engine needs: list environments, files and SLS names,
and get a file on local disk. ``LocalFileClient`` reads the directories in place (masterless,
like ``salt-call --local``). ``RemoteFileClient`` asks the master with Salt's fileserver
requests (``_file_envs``, ``_file_list``, ``_file_hash``, ``_serve_file`` ...) and keeps
files in ``cachedir/files/<saltenv>/<path>``: a file whose hash matches the master's is
not fetched again. Files are written atomically, so a power cut never leaves half a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import structlog

from autopi_common.fsutil import ensure_dir, write_atomic
from autopi_common.sls.roots import DEFAULT_HASH_TYPE, FileRoots, clean_relpath, sls_names

__all__ = ["FileClient", "FileClientError", "LocalFileClient", "MasterCall", "RemoteFileClient",
           "state_paths"]

log = structlog.get_logger(__name__)

MasterCall = Callable[..., Any]
# Salt's client tries a download this many times when the hash does not match.
_DOWNLOAD_TRIES = 3


class FileClientError(Exception):
    """A file could not be fetched (the master's answer was malformed or kept changing)."""


@runtime_checkable
class FileClient(Protocol):
    """A source of state files for one run."""

    def envs(self) -> list[str]:
        """The environment names (``base`` ...)."""

    def list_files(self, saltenv: str, prefix: str = "") -> list[str]:
        """Relative paths of the files in ``saltenv``."""

    def list_states(self, saltenv: str) -> list[str]:
        """SLS names in ``saltenv``."""

    def cache_file(self, path: str, saltenv: str) -> Path | None:
        """A local copy of ``path`` (relative, or ``salt://path``); None when it is absent."""


def state_paths(sls: str) -> tuple[str, str]:
    """The two files an SLS name may live in: ``a/b.sls`` and ``a/b/init.sls``."""
    base = sls.replace(".", "/")
    return f"{base}.sls", f"{base}/init.sls"


def split_url(path: str, saltenv: str) -> tuple[str, str]:
    """``salt://a/b?saltenv=dev`` as (``a/b``, ``dev``); the query overrides ``saltenv``."""
    path = path.removeprefix("salt://")
    if "?" in path:
        path, query = path.split("?", 1)
        for part in query.split("&"):
            key, _, value = part.partition("=")
            if key == "saltenv" and value:
                saltenv = value
    return path, saltenv


class LocalFileClient:
    """State files straight from ``file_roots`` directories (``{env: [dir, ...]}``)."""

    def __init__(self, file_roots: Mapping[str, Sequence[str | Path]]) -> None:
        self.roots = FileRoots(file_roots)

    def envs(self) -> list[str]:
        return self.roots.envs()

    def list_files(self, saltenv: str, prefix: str = "") -> list[str]:
        return self.roots.list_files(saltenv, prefix)

    def list_states(self, saltenv: str) -> list[str]:
        return self.roots.list_states(saltenv)

    def cache_file(self, path: str, saltenv: str) -> Path | None:
        rel, saltenv = split_url(path, saltenv)
        return self.roots.find(saltenv, rel)


def file_envs(reply: Any) -> list[str]:
    """The environments in a ``_file_envs`` reply (``["base"]`` if it is not a list)."""
    return [str(env) for env in reply] if isinstance(reply, list) else ["base"]


class RemoteFileClient:
    """State files from the master, cached on disk by hash; lists are remembered per client.

    ``master_call(load, private=None, timeout=60)`` sends one request to the master and
    returns its reply (the daemon's ``ctx.services["master_call"]``). Make one client per
    state run, so a run sees a consistent listing and the next run sees changes.
    """

    def __init__(self, master_call: MasterCall, cachedir: str | Path, *,
                 timeout: float = 60.0, envs: list[str] | None = None) -> None:
        self.master_call = master_call
        self.cachedir = Path(cachedir) / "files"
        self.timeout = timeout
        self._envs = envs  # the master's answer to _file_envs, when already known
        self._lists: dict[tuple[str, str], list[str]] = {}
        self._fetched: dict[tuple[str, str], Path | None] = {}
        self.downloads = 0

    def _ask(self, load: dict[str, Any]) -> Any:
        return self.master_call(load, None, self.timeout)

    def envs(self) -> list[str]:
        if self._envs is None:
            self._envs = file_envs(self._ask({"cmd": "_file_envs"}))
        return list(self._envs)

    def list_files(self, saltenv: str, prefix: str = "") -> list[str]:
        key = (saltenv, prefix)
        if key not in self._lists:
            reply = self._ask({"cmd": "_file_list", "saltenv": saltenv, "prefix": prefix})
            self._lists[key] = [str(p) for p in reply] if isinstance(reply, list) else []
        return self._lists[key]

    def list_states(self, saltenv: str) -> list[str]:
        return sls_names(self.list_files(saltenv))

    def cache_file(self, path: str, saltenv: str) -> Path | None:
        rel, saltenv = split_url(path, saltenv)
        clean = clean_relpath(rel)
        if clean is None:
            return None
        key = (saltenv, clean)
        if key not in self._fetched:
            self._fetched[key] = self._fetch(clean, saltenv)
        return self._fetched[key]

    def _fetch(self, rel: str, saltenv: str) -> Path | None:
        reply = self._ask({"cmd": "_file_hash", "path": rel, "saltenv": saltenv})
        if not isinstance(reply, dict) or not reply.get("hsum"):
            return None
        hsum, hash_type = str(reply["hsum"]), str(reply.get("hash_type") or DEFAULT_HASH_TYPE)
        dest = self.cachedir / saltenv / rel
        if dest.is_file() and _digest(dest.read_bytes(), hash_type) == hsum:
            return dest
        for attempt in range(1, _DOWNLOAD_TRIES + 1):
            data = self._download(rel, saltenv)
            if data is None:
                return None
            if _digest(data, hash_type) == hsum:
                ensure_dir(dest.parent, 0o700)
                write_atomic(dest, data, 0o600)
                self.downloads += 1
                log.info("fileclient.fetched", path=rel, saltenv=saltenv, size=len(data))
                return dest
            log.warning("fileclient.bad_download", path=rel, attempt=attempt)
        raise FileClientError(f"salt://{rel} in saltenv {saltenv!r}: the master's file kept "
                              f"changing or arrived damaged ({_DOWNLOAD_TRIES} tries)")

    def _download(self, rel: str, saltenv: str) -> bytes | None:
        chunks: list[bytes] = []
        loc = 0
        while True:
            reply = self._ask({"cmd": "_serve_file", "path": rel, "saltenv": saltenv, "loc": loc})
            if not isinstance(reply, dict) or "data" not in reply:
                raise FileClientError(f"salt://{rel}: malformed _serve_file reply")
            if not reply.get("dest") and not chunks:
                return None  # the master has no such file (any more)
            data = reply["data"]
            if not data:
                return b"".join(chunks)
            if reply.get("gzip"):
                import gzip

                data = gzip.decompress(data if isinstance(data, bytes) else data.encode())
            chunk = data.encode() if isinstance(data, str) else bytes(data)
            chunks.append(chunk)
            loc += len(chunk)


def _digest(data: bytes, hash_type: str) -> str:
    return hashlib.new(hash_type, data).hexdigest()
