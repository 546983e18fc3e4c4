"""The master's file server on 4506: Salt's ``roots`` backend over ``file_roots`` environments.

Answers the requests a stock salt-minion's file client sends (``salt/fileclient.py``
``RemoteClient``) with the reply shapes of ``salt/fileserver/roots.py``:

``_file_envs``            ``[env, ...]``
``_file_list``            sorted relative paths (``prefix`` filters)
``_file_list_emptydirs``  sorted relative paths of empty directories
``_dir_list``             sorted relative directory paths
``_symlink_list``         ``{}`` (links are served as the files they point to)
``_file_hash``            ``{"hsum": hex, "hash_type": "sha256"}``, or ``""`` when absent
``_file_find``            ``{"path": rel, "rel": rel, "stat": [...]}`` or empty paths
``_serve_file``           ``{"data": bytes, "dest": rel}`` from byte ``loc``; empty data at
                          the end (``gzip`` level honoured: ``{"gzip": n}`` and compressed data)
``_master_tops``          ``{}`` (no external tops)
``_master_opts``          the state options a minion's highstate takes from its master
                          (renderer, state_top, top merging ...); ``file_roots`` lists the
                          environments with no paths, as Salt's master does

Every path is checked: absolute paths, ``..`` and anything that resolves outside the
environment's roots (through a symlink too) is refused as "not found".
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from autopi_common.sls.roots import DEFAULT_HASH_TYPE, FileRoots, clean_relpath
from autopi_proto.messages import OpenedRequest

__all__ = ["FILE_BUFFER_SIZE", "FileServer"]

log = structlog.get_logger(__name__)

FILE_BUFFER_SIZE = 1048576  # Salt master's file_buffer_size
Handler = Callable[[OpenedRequest], Awaitable[Any]]


class FileServer:
    """Serves ``opts["file_roots"]`` (``{env: [dir, ...]}``, absolute paths)."""

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self.roots = FileRoots(opts.get("file_roots") or {})
        self.hash_type = str(opts.get("hash_type", DEFAULT_HASH_TYPE))
        self.buffer_size = int(opts.get("file_buffer_size", FILE_BUFFER_SIZE))

    def handlers(self) -> dict[str, Handler]:
        """The request handlers to merge into the master's request server."""
        table: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "_file_envs": self.file_envs, "_file_list": self.file_list,
            "_file_list_emptydirs": self.file_list_emptydirs, "_dir_list": self.dir_list,
            "_symlink_list": self.symlink_list, "_file_hash": self.file_hash,
            "_file_find": self.file_find, "_serve_file": self.serve_file,
            "_master_tops": self.master_tops, "_master_opts": self.master_opts,
        }
        return {cmd: _threaded(cmd, function) for cmd, function in table.items()}

    # Each function takes a request load and returns the reply (blocking file I/O).

    def file_envs(self, load: Mapping[str, Any]) -> list[str]:
        return self.roots.envs()

    def file_list(self, load: Mapping[str, Any]) -> list[str]:
        env = _env(load)
        return self.roots.list_files(env, _prefix(load)) if env else []

    def file_list_emptydirs(self, load: Mapping[str, Any]) -> list[str]:
        env = _env(load)
        return self.roots.list_emptydirs(env, _prefix(load)) if env else []

    def dir_list(self, load: Mapping[str, Any]) -> list[str]:
        env = _env(load)
        return self.roots.list_dirs(env, _prefix(load)) if env else []

    def symlink_list(self, load: Mapping[str, Any]) -> dict[str, str]:
        return {}

    def master_tops(self, load: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def master_opts(self, load: Mapping[str, Any]) -> dict[str, Any]:
        opts: dict[str, Any] = {"file_roots": {env: [] for env in self.roots.envs()},
                                "top_file_merging_strategy": "merge", "env_order": [],
                                "default_top": "base"}
        if load.get("env_only"):
            return opts
        opts.update({"renderer": "jinja|yaml", "failhard": False, "state_top": "salt://top.sls",
                     "state_top_saltenv": None, "nodegroups": {}, "state_auto_order": True,
                     "state_events": False, "state_aggregate": False, "jinja_env": {},
                     "jinja_sls_env": {}, "jinja_lstrip_blocks": False,
                     "jinja_trim_blocks": False})
        return opts

    def file_hash(self, load: Mapping[str, Any]) -> dict[str, str] | str:
        found = self._find(load)
        if found is None:
            return ""
        env, rel = found
        digest = self.roots.hash_file(env, rel, self.hash_type)
        return {"hsum": digest, "hash_type": self.hash_type} if digest else ""

    def file_find(self, load: Mapping[str, Any]) -> dict[str, Any]:
        found = self._find(load)
        if found is None:
            return {"path": "", "rel": ""}
        env, rel = found
        path = self.roots.find(env, rel)
        assert path is not None
        return {"path": rel, "rel": rel, "stat": list(os.stat(path))}

    def serve_file(self, load: Mapping[str, Any]) -> dict[str, Any]:
        ret: dict[str, Any] = {"data": "", "dest": ""}
        loc = load.get("loc")
        found = self._find(load)
        if found is None or not isinstance(loc, int) or isinstance(loc, bool) or loc < 0:
            return ret
        env, rel = found
        path = self.roots.find(env, rel)
        assert path is not None
        with open(path, "rb") as handle:
            handle.seek(loc)
            data = handle.read(self.buffer_size)
        ret["dest"] = rel
        level = load.get("gzip")
        if data and isinstance(level, int) and 1 <= level <= 9:
            data = gzip.compress(data, level)
            ret["gzip"] = level
        ret["data"] = data
        return ret

    def _find(self, load: Mapping[str, Any]) -> tuple[str, str] | None:
        env, path = _env(load), load.get("path")
        if not env or not isinstance(path, str):
            return None
        path, env = _split_query(path, env)
        rel = clean_relpath(path)
        if rel is None:
            log.warning("fileserver.path_refused", path=path[:200], env=env)
            return None
        return (env, rel) if self.roots.find(env, rel) is not None else None


def _threaded(cmd: str, function: Callable[[Mapping[str, Any]], Any]) -> Handler:
    async def handle(req: OpenedRequest) -> Any:
        try:
            return await asyncio.to_thread(function, req.load)
        except OSError as err:  # a file vanished or became unreadable mid-request
            log.warning("fileserver.error", cmd=cmd, minion=req.minion_id, error=str(err))
            return {"data": "", "dest": ""} if cmd == "_serve_file" else ""
    handle.__name__ = f"fileserver{cmd}"
    return handle


def _env(load: Mapping[str, Any]) -> str | None:
    env = load.get("saltenv", "base")
    return str(env) if isinstance(env, (str, int)) and str(env) else None


def _prefix(load: Mapping[str, Any]) -> str:
    prefix = load.get("prefix", "")
    return prefix.strip("/") if isinstance(prefix, str) else ""


def _split_query(path: str, env: str) -> tuple[str, str]:
    """``a/b?saltenv=dev`` as (``a/b``, ``dev``), as Salt's ``find_file``."""
    if "?" not in path:
        return path, env
    path, query = path.split("?", 1)
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "saltenv" and value:
            env = value
    return path, env
