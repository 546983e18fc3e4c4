"""State module ``file``: files with given contents and modes, directories, symlinks, absence.

Files are replaced atomically (temp file, fsync, rename), so a power cut leaves the old
file or the new one. ``file.managed`` takes its contents from ``contents``, or from
``source`` (``salt://path`` from the file server, or an absolute local path), optionally
rendered with ``template: jinja``; ``backup: minion`` keeps the old file under
``cachedir/file_backup``; ``changes`` carries a unified diff, as Salt's. ``file.recurse``
lives in ``file_recurse``.
"""

from __future__ import annotations

import difflib
import grp
import os
import pwd
import shutil
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopi_agent.state.context import StateContext, state_return
from autopi_agent.states.file_recurse import recurse
from autopi_common.fsutil import write_atomic
from autopi_common.sls import RenderError
from autopi_common.sls.render import render_template
from autopi_proto.grainmatch import traverse

__all__ = ["absent", "directory", "managed", "recurse", "symlink"]

_TEST_NOTE = "\nNote: No changes made, actual changes may\nbe different due to other states."


class _Failed(Exception):
    """The state cannot be applied; the message is the state's comment."""


def managed(ctx: StateContext, name: str, source: Any = None, contents: Any = None,
            contents_pillar: str | None = None, template: str | None = None,
            context: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None,
            user: str | None = None, group: str | None = None, mode: Any = None,
            makedirs: bool = False, dir_mode: Any = None, backup: str = "",
            contents_newline: bool = True, replace: bool = True, show_changes: bool = True,
            **kwargs: Any) -> dict[str, Any]:
    """Make file ``name`` hold the given contents, owner and mode.

    ``contents`` (text, or a list of lines) or ``contents_pillar`` (a pillar key) or
    ``source`` (``salt://...`` or an absolute path; a list means the first that exists);
    ``template: jinja`` renders the source with grains, pillar, ``context`` and
    ``defaults``. ``makedirs`` creates missing parent directories (``dir_mode``);
    ``replace: False`` leaves an existing file's contents alone; ``backup: minion``
    keeps the old file. Example::

        /etc/autopi/logger.conf:
          file.managed:
            - source: salt://autopi/logger.conf.j2
            - template: jinja
            - mode: 640
    """
    path = Path(name)
    try:
        _absolute(name)
        if path.is_dir() and not path.is_symlink():
            raise _Failed(f"Specified target {name} is a directory")
        wanted = _wanted_contents(ctx, name, source, contents, contents_pillar, template,
                                  context, defaults, contents_newline)
        owner = _ids(user, group)
        new_mode = _mode(mode)
    except _Failed as err:
        return state_return(name, False, str(err))
    exists = path.is_file()
    old = path.read_bytes() if exists else None
    if exists and not replace:
        wanted = old
    changes = _content_changes(name, old, wanted if wanted is not None else (old or b""),
                               show_changes)
    changes.update(_meta_changes(path if exists else None, new_mode, owner, user, group))
    if ctx.test:
        if not changes:
            return state_return(name, True, f"The file {name} is in the correct state")
        return state_return(name, None, f"The file {name} is set to be changed{_TEST_NOTE}",
                            {"newfile": name} if not exists else changes)
    if not changes:
        return state_return(name, True, f"File {name} is in the correct state")
    try:
        _parent(path, makedirs, _mode(dir_mode))
        if exists and backup == "minion" and old != wanted:
            _backup(ctx, path)
        data = wanted if wanted is not None else (old or b"")
        mode_bits = int(new_mode, 8) if new_mode else (
            stat.S_IMODE(path.stat().st_mode) if exists else 0o644)
        write_atomic(path, data, mode_bits)
        if owner is not None:
            os.chown(path, owner[0], owner[1])
        if not exists and mode_bits != 0o600:
            # As Salt: a new file starts as a 0600 temp file, so any other mode is a change.
            changes["mode"] = f"{mode_bits:04o}"
    except (_Failed, OSError) as err:
        return state_return(name, False, str(err) if isinstance(err, _Failed)
                            else f"Unable to manage file: {err}")
    return state_return(name, True, f"File {name} updated", changes)


def directory(ctx: StateContext, name: str, user: str | None = None, group: str | None = None,
              dir_mode: Any = None, mode: Any = None, makedirs: bool = False,
              **kwargs: Any) -> dict[str, Any]:
    """Make directory ``name`` exist with the given owner and mode (``dir_mode`` or ``mode``);
    ``makedirs`` creates missing parents."""
    path = Path(name)
    try:
        _absolute(name)
        if path.exists() and not path.is_dir():
            raise _Failed(f"Specified location {name} exists and is a file")
        owner = _ids(user, group)
        wanted_mode = _mode(dir_mode or mode)
    except _Failed as err:
        return state_return(name, False, str(err))
    if not path.is_dir():
        changes = {name: {"directory": "new"}}
        if ctx.test:
            return state_return(name, None, f"The following files will be changed:\n{name}: "
                                "directory - new\n", changes)
        if not makedirs and not path.parent.is_dir():
            return state_return(name, False, f"No directory to create {name} in", changes)
        path.mkdir(parents=makedirs, mode=0o755)
        _apply_meta(path, wanted_mode, owner)
        return state_return(name, True, "", changes)
    meta = _meta_changes(path, wanted_mode, owner, user, group)
    if not meta:
        return state_return(name, True, f"The directory {name} is in the correct state")
    if ctx.test:
        lines = "".join(f"{name}: {key} - {value}\n" for key, value in meta.items())
        return state_return(name, None, f"The following files will be changed:\n{lines}",
                            {name: meta})
    _apply_meta(path, wanted_mode, owner)
    # As Salt 3008: the directory's entry, and file.check_perms' own keys beside it.
    return state_return(name, True, f"Directory {name} updated", {name: meta, **meta})


def absent(ctx: StateContext, name: str, **kwargs: Any) -> dict[str, Any]:
    """Make sure ``name`` (a file, symlink or whole directory tree) does not exist."""
    path = Path(name)
    try:
        _absolute(name)
    except _Failed as err:
        return state_return(name, False, str(err))
    if path.resolve() == Path("/"):
        return state_return(name, False, 'Refusing to make "/" absent')
    is_dir = path.is_dir() and not path.is_symlink()
    if not path.exists() and not path.is_symlink():
        return state_return(name, True, f"File {name} is not present")
    kind = "Directory" if is_dir else "File"
    if ctx.test:
        return state_return(name, None, f"{kind} {name} is set for removal", {"removed": name})
    try:
        shutil.rmtree(path) if is_dir else path.unlink()
    except OSError as err:
        return state_return(name, False, f"Failed to remove {kind.lower()} {name}: {err}")
    return state_return(name, True, f"Removed {kind.lower()} {name}", {"removed": name})


def symlink(ctx: StateContext, name: str, target: str, force: bool = False,
            makedirs: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Make ``name`` a symbolic link to ``target``; ``force`` replaces a file in the way."""
    path = Path(name)
    try:
        _absolute(name)
    except _Failed as err:
        return state_return(name, False, str(err))
    if path.is_symlink() and os.readlink(path) == target:
        if ctx.test:
            return state_return(name, True, f"The symlink {name} is present")
        owner = path.lstat()
        return state_return(name, True, f"Symlink {name} is present and owned by "
                            f"{_user_name(owner.st_uid)}:{_group_name(owner.st_gid)}")
    if path.exists() and not path.is_symlink() and not force:
        return state_return(name, False, f"File exists where the symlink {name} should be")
    replacing = path.is_symlink() or path.exists()
    changes = {"change": name} if path.is_symlink() else {"new": name}
    if ctx.test:
        comment = (f"Link {name} target is set to be changed to {target}" if path.is_symlink()
                   else f"Symlink {name} to {target} is set for creation")
        return state_return(name, None, comment, changes)
    try:
        _parent(path, makedirs, None)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        if replacing and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)  # atomic: the link is never missing
    except (_Failed, OSError) as err:
        return state_return(name, False, str(err) if isinstance(err, _Failed)
                            else f"Unable to create symlink {name}: {err}")
    comment = (f"Set target of symlink {name} -> {target}" if "change" in changes
               else f"Created new symlink {name} -> {target}")
    return state_return(name, True, comment, changes)


# -- helpers ------------------------------------------------------------------------


def _absolute(name: str) -> None:
    if not os.path.isabs(name):
        raise _Failed(f"Specified file {name} is not an absolute path")


def _wanted_contents(ctx: StateContext, name: str, source: Any, contents: Any,
                     contents_pillar: str | None, template: str | None,
                     context: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None,
                     newline: bool) -> bytes | None:
    if contents_pillar is not None:
        contents = traverse(ctx.pillar, contents_pillar, None)
        if contents is None:
            raise _Failed(f"Pillar {contents_pillar} does not exist")
    if contents is not None:
        text = "\n".join(str(line) for line in contents) if isinstance(contents, list) \
            else str(contents)
        if newline and not text.endswith("\n"):
            text += "\n"
        return text.encode()
    if source is None:
        return None
    data, url = _read_source(ctx, source)
    if template:
        if template != "jinja":
            raise _Failed(f"Unable to manage file: template {template!r} is not supported; "
                          "use template: jinja")
        data = _render(ctx, data, url, context, defaults)
    return data


def _read_source(ctx: StateContext, source: Any) -> tuple[bytes, str]:
    for url in source if isinstance(source, list) else [source]:
        url = str(url)
        if url.startswith("salt://"):
            cached = ctx.fileclient.cache_file(url, ctx.saltenv)
            if cached is not None:
                return cached.read_bytes(), url
        else:
            local = Path(url.removeprefix("file://"))
            if local.is_absolute() and local.is_file():
                return local.read_bytes(), url
    raise _Failed(f"Source file {source} not found in saltenv '{ctx.saltenv}'")


def _render(ctx: StateContext, data: bytes, url: str, context: Mapping[str, Any] | None,
            defaults: Mapping[str, Any] | None) -> bytes:
    variables: dict[str, Any] = {"grains": ctx.grains, "pillar": ctx.pillar,
                                 "opts": dict(ctx.agent.opts), "saltenv": ctx.saltenv,
                                 "sls": ctx.low.get("__sls__", ""), "source": url}
    if ctx.functions is not None:
        variables["salt"] = ctx.functions
    variables.update(defaults or {})
    variables.update(context or {})

    def fetch(template_name: str) -> str | None:
        cached = ctx.fileclient.cache_file(template_name, ctx.saltenv)
        return cached.read_text(encoding="utf-8") if cached is not None else None

    try:
        return render_template(data.decode("utf-8"), source=url, context=variables,
                               fetch=fetch).encode()
    except (RenderError, UnicodeDecodeError) as err:
        raise _Failed(f"Unable to manage file: {err}") from err


def _content_changes(name: str, old: bytes | None, new: bytes,
                     show_changes: bool) -> dict[str, Any]:
    if old is None:
        return {"diff": "New file"}
    if old == new:
        return {}
    if not show_changes:
        return {"diff": "<show_changes=False>"}
    try:
        before, after = old.decode("utf-8"), new.decode("utf-8")
    except UnicodeDecodeError:
        return {"diff": "Replace binary file"}
    diff = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                fromfile="", tofile="")
    return {"diff": "".join(diff)}


def _mode(mode: Any) -> str | None:
    """A mode as Salt writes it (644, "644", "0644") in four octal digits ("0644"); None if unset."""
    if mode is None or mode == "":
        return None
    text = str(mode).strip().lstrip("0") or "0"
    try:
        int(text, 8)
    except ValueError:
        raise _Failed(f"Invalid mode {mode!r}: use octal digits such as 644 or '0640'") from None
    return text.rjust(4, "0")


def _ids(user: str | None, group: str | None) -> tuple[int, int] | None:
    if user is None and group is None:
        return None
    missing = []
    uid = gid = -1
    if user is not None:
        try:
            uid = pwd.getpwnam(str(user)).pw_uid
        except KeyError:
            missing.append(f"User {user} is not available")
    if group is not None:
        try:
            gid = grp.getgrnam(str(group)).gr_gid
        except KeyError:
            missing.append(f"Group {group} is not available")
    if missing:
        raise _Failed(" ".join(missing))
    return uid, gid


def _meta_changes(path: Path | None, mode: str | None, owner: tuple[int, int] | None,
                  user: str | None, group: str | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    info = path.stat() if path is not None else None
    if mode is not None and (info is None or stat.S_IMODE(info.st_mode) != int(mode, 8)):
        if info is not None:
            changes["mode"] = mode
    if owner is not None and info is not None:
        if user is not None and info.st_uid != owner[0]:
            changes["user"] = user
        if group is not None and info.st_gid != owner[1]:
            changes["group"] = group
    return changes


def _apply_meta(path: Path, mode: str | None, owner: tuple[int, int] | None) -> None:
    if mode is not None:
        os.chmod(path, int(mode, 8))
    if owner is not None:
        os.chown(path, owner[0], owner[1])


def _parent(path: Path, makedirs: bool, dir_mode: str | None) -> None:
    if path.parent.is_dir():
        return
    if not makedirs:
        raise _Failed("Parent directory not present")
    path.parent.mkdir(parents=True, mode=int(dir_mode, 8) if dir_mode else 0o755)


def _backup(ctx: StateContext, path: Path) -> None:
    stamp = time.strftime("%a_%b_%d_%H:%M:%S_", time.localtime()) + \
        f"{int(time.time() * 1e6) % 1000000:06d}_{time.strftime('%Y')}"
    root = Path(str(ctx.agent.opts.get("cachedir", "/var/cache/autopi-agent"))) / "file_backup"
    dest = root / str(path.parent).lstrip("/") / f"{path.name}_{stamp}"
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(dest, path.read_bytes(), stat.S_IMODE(path.stat().st_mode))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
