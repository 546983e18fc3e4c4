"""``file.recurse``: copy a ``salt://`` directory to the agent, file by file, as Salt does.

Every file under the source becomes a ``file.managed`` (same ``template``, ``file_mode``,
owner), every directory holding one a ``file.directory`` (``dir_mode``);
``include_pat``/``exclude_pat`` are globs (or ``E@regex``) on the path relative to the
source; ``clean`` removes what the source does not hold (except what ``exclude_pat``
matches). The return is Salt's: ``changes`` keyed by path, plus ``removed``.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autopi_agent.fileclient import split_url
from autopi_agent.state.context import StateContext, state_return

__all__ = ["recurse"]


def recurse(ctx: StateContext, name: str, source: Any, clean: bool = False,
            user: str | None = None, group: str | None = None, dir_mode: Any = None,
            file_mode: Any = None, template: str | None = None,
            context: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None,
            include_pat: Any = None, exclude_pat: Any = None, backup: str = "",
            **kwargs: Any) -> dict[str, Any]:
    """Make directory ``name`` hold the files of ``source`` (``salt://dir``).

    SLS example::

        /etc/autopi/scripts:
          file.recurse:
            - source: salt://car/scripts
            - file_mode: 755
            - clean: True
            - exclude_pat: '*.orig'
    """
    if "mode" in kwargs:
        return state_return(name, False, "'mode' is not allowed in 'file.recurse'. Please use "
                            "'file_mode' and 'dir_mode'.")
    if not os.path.isabs(name):
        return state_return(name, False, f"Specified file {name} is not an absolute path")
    try:
        root, saltenv = _source(ctx, source)
    except ValueError as err:
        return state_return(name, False, f"Recurse failed: {err}")
    if os.path.exists(name) and not os.path.isdir(name):
        return state_return(name, False, f"The path {name} exists and is not a directory")
    if not ctx.test:
        Path(name).mkdir(parents=True, exist_ok=True)
    files = _managed_files(ctx, name, root, saltenv, include_pat, exclude_pat)
    run = _Run(name)
    from autopi_agent.states.file import directory, managed

    for folder in sorted({str(Path(dest).parent) for dest in files}):
        run.merge(folder, directory(ctx, folder, user=user, group=group, dir_mode=dir_mode,
                                    makedirs=True))
    for dest, url in sorted(files.items()):
        run.merge(dest, managed(ctx, dest, source=url, user=user, group=group, mode=file_mode,
                                template=template, makedirs=True, context=context,
                                defaults=defaults, backup=backup))
    if clean:
        run.clean(ctx, set(files), exclude_pat)
    return run.result()


class _Run:
    """Salt's way of folding the inner states into one return."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ret = state_return(name, True)
        self.comments: dict[str, list[str]] = {}

    def merge(self, path: str, inner: Mapping[str, Any]) -> None:
        if inner["result"] is False or self.ret["result"] is True:
            self.ret["result"] = inner["result"]
        if inner["result"] is not True and inner["comment"]:
            self.comments.setdefault(path, []).append(str(inner["comment"]))
        if inner["changes"]:
            self.ret["changes"][path] = inner["changes"]

    def clean(self, ctx: StateContext, keep: set[str], exclude_pat: Any) -> None:
        kept = set(keep)
        for path in keep:
            kept.update(str(parent) for parent in Path(path).parents)
        removed = []
        for base, dirs, names in os.walk(self.name):
            for entry in [*dirs, *names]:
                path = os.path.join(base, entry)
                if path not in kept and _included(os.path.relpath(path, self.name), None,
                                                  exclude_pat):
                    removed.append(path)
        removed = [path for path in removed
                   if not any(path.startswith(other + os.sep) for other in removed)]
        if not removed:
            return
        if ctx.test:
            if self.ret["result"]:
                self.ret["result"] = None
            self.comments.setdefault("removed", []).extend(removed)
            return
        for path in removed:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        self.ret["changes"]["removed"] = removed

    def result(self) -> dict[str, Any]:
        comment = "\n".join(f"\n#### {path} ####\n" + "\n".join(lines)
                            for path, lines in self.comments.items()).strip()
        self.ret["comment"] = comment or f"Recursively updated {self.name}"
        if not self.ret["changes"] and self.ret["result"]:
            self.ret["comment"] = f"The directory {self.name} is in the correct state"
        return self.ret


def _source(ctx: StateContext, source: Any) -> tuple[str, str]:
    sources = [source] if isinstance(source, str) else list(source or [])
    for url in sources:
        if not isinstance(url, str) or not url.startswith("salt://"):
            raise ValueError(f"Invalid source '{url}' (must be a salt:// URI)")
    for url in sources:
        root, saltenv = split_url(url.rstrip("/"), ctx.saltenv)
        if ctx.fileclient.list_files(saltenv, root.rstrip("/") + "/"):
            return root.rstrip("/"), saltenv
    raise ValueError("none of the specified sources were found")


def _managed_files(ctx: StateContext, name: str, root: str, saltenv: str, include_pat: Any,
                   exclude_pat: Any) -> dict[str, str]:
    files: dict[str, str] = {}
    suffix = "" if saltenv == ctx.saltenv else f"?saltenv={saltenv}"
    for path in ctx.fileclient.list_files(saltenv, root + "/"):
        relative = posixpath.relpath(path, root)
        if relative.startswith("..") or not _included(relative, include_pat, exclude_pat):
            continue
        files[os.path.join(name, *relative.split("/"))] = f"salt://{path}{suffix}"
    return files


def _matches(path: str, pattern: str) -> bool:
    if pattern.startswith("E@"):
        return re.search(pattern[2:], path) is not None
    return fnmatch.fnmatch(path, pattern)


def _included(path: str, include_pat: Any, exclude_pat: Any) -> bool:
    """Salt's include/exclude test: a glob, ``E@regex`` or a list of them for each."""
    includes = _patterns(include_pat)
    excludes = _patterns(exclude_pat)
    if includes and not any(_matches(path, pattern) for pattern in includes):
        return False
    return not any(_matches(path, pattern) for pattern in excludes)


def _patterns(value: Any) -> Sequence[str]:
    if not value:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]
