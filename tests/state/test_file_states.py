"""file.managed/directory/absent/symlink on real files in tmp_path, through state.single/sls."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from autopi_agent.modules import state as state_mod
from tests.state.conftest import MakeContext
from tests.state.test_service_pkg import write_tree


def single(ctx: Any, fun: str, name: str | Path, **kwargs: Any) -> dict[str, Any]:
    ret = state_mod.single(ctx, fun, str(name), **kwargs)
    (result,) = ret.ret.values()
    assert ret.retcode == (2 if result["result"] is False else 0)
    return dict(result)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_managed_contents_create_change_and_idempotent(tmp_path: Path,
                                                       make_ctx: MakeContext) -> None:
    ctx = make_ctx([tmp_path / "srv"])
    target = tmp_path / "etc" / "logger.conf"
    new = single(ctx, "file.managed", target, contents="level: info", mode=640, makedirs=True)
    assert (new["result"], new["comment"]) == (True, f"File {target} updated")
    assert new["changes"] == {"diff": "New file", "mode": "0640"}
    assert target.read_text() == "level: info\n" and mode_of(target) == 0o640
    same = single(ctx, "file.managed", target, contents="level: info", mode="0640")
    assert (same["changes"], same["comment"]) == ({}, f"File {target} is in the correct state")
    changed = single(ctx, "file.managed", target, contents=["level: debug", "x: 1"], mode=600)
    assert changed["changes"] == {
        "diff": "--- \n+++ \n@@ -1 +1,2 @@\n-level: info\n+level: debug\n+x: 1\n",
        "mode": "0600"}
    assert target.read_text() == "level: debug\nx: 1\n" and mode_of(target) == 0o600


def test_managed_test_mode_writes_nothing(tmp_path: Path, make_ctx: MakeContext) -> None:
    ctx = make_ctx([tmp_path / "srv"])
    target = tmp_path / "new.txt"
    dry = state_mod.single(ctx, "file.managed", str(target), test=True, contents="x")
    (result,) = dry.ret.values()
    assert result["result"] is None and result["changes"] == {"newfile": str(target)}
    assert result["comment"].startswith(f"The file {target} is set to be changed\nNote:")
    assert not target.exists()
    target.write_text("old\n")
    (result,) = state_mod.single(ctx, "file.managed", str(target), test=True,
                                 contents="new").ret.values()
    assert result["changes"] == {"diff": "--- \n+++ \n@@ -1 +1 @@\n-old\n+new\n"}
    assert target.read_text() == "old\n"


def test_managed_backup_keeps_old_file(tmp_path: Path, make_ctx: MakeContext) -> None:
    ctx = make_ctx([tmp_path / "srv"])
    target = tmp_path / "app.conf"
    target.write_text("version 1\n")
    os.chmod(target, 0o604)
    single(ctx, "file.managed", target, contents="version 2", backup="minion")
    assert target.read_text() == "version 2\n" and mode_of(target) == 0o604
    backups = list((tmp_path / "cache" / "file_backup").rglob("app.conf_*"))
    assert len(backups) == 1 and backups[0].read_text() == "version 1\n"


def test_managed_parent_missing_and_bad_paths(tmp_path: Path, make_ctx: MakeContext) -> None:
    ctx = make_ctx([tmp_path / "srv"])
    missing = single(ctx, "file.managed", tmp_path / "no" / "dir" / "f", contents="x")
    assert (missing["result"], missing["comment"]) == (False, "Parent directory not present")
    relative = single(ctx, "file.managed", "relative/path", contents="x")
    assert relative["comment"] == "Specified file relative/path is not an absolute path"
    (tmp_path / "adir").mkdir()
    is_dir = single(ctx, "file.managed", tmp_path / "adir", contents="x")
    assert is_dir["comment"] == f"Specified target {tmp_path / 'adir'} is a directory"
    bad_mode = single(ctx, "file.managed", tmp_path / "m", contents="x", mode="rwx")
    assert bad_mode["result"] is False and "Invalid mode" in bad_mode["comment"]


def test_managed_source_template_pillar_and_missing_source(tmp_path: Path,
                                                           make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {
        "conf/logger.j2": "{% from 'conf/defaults.jinja' import rate %}"
                          "id={{ grains['id'] }} rate={{ rate }} who={{ who }} "
                          "fleet={{ pillar['fleet'] }} sls={{ sls }}\n",
        "conf/defaults.jinja": "{% set rate = 10 %}",
        "conf/plain.txt": "plain {{ not rendered }}\n",
        "files.sls": f"""
{tmp_path}/out/logger.conf:
  file.managed:
    - source: salt://conf/logger.j2
    - template: jinja
    - makedirs: True
    - defaults:
        who: default
    - context:
        who: context
{tmp_path}/out/plain.txt:
  file.managed:
    - source:
      - salt://conf/absent.txt
      - salt://conf/plain.txt
{tmp_path}/out/secret:
  file.managed:
    - contents_pillar: api:token
    - mode: 600
    - require:
      - file: {tmp_path}/out/logger.conf
{tmp_path}/out/nothing:
  file.managed:
    - source: salt://conf/absent.txt
"""})
    pillar = write_tree(tmp_path / "pillar", {"top.sls": "base:\n  '*':\n    - p\n",
                                              "p.sls": "fleet: berlin\napi:\n  token: s3cr3t\n"})
    ret = state_mod.sls(make_ctx([srv], [pillar]), "files")
    results = {r["__id__"].rsplit("/", 1)[-1]: r for r in ret.ret.values()}
    out = tmp_path / "out"
    assert (out / "logger.conf").read_text() == \
        "id=car-0001 rate=10 who=context fleet=berlin sls=files\n"
    assert (out / "plain.txt").read_text() == "plain {{ not rendered }}\n"
    assert (out / "secret").read_text() == "s3cr3t\n" and mode_of(out / "secret") == 0o600
    assert results["nothing"]["result"] is False
    assert results["nothing"]["comment"] == \
        "Source file salt://conf/absent.txt not found in saltenv 'base'"
    assert ret.retcode == 2


def test_template_error_names_file_and_line(tmp_path: Path, make_ctx: MakeContext) -> None:
    write_tree(tmp_path / "srv", {"t.j2": "line one\n{{ undefined_thing }}\n"})
    result = single(make_ctx([tmp_path / "srv"]), "file.managed", tmp_path / "x",
                    source="salt://t.j2", template="jinja")
    assert result["result"] is False
    assert "salt://t.j2, line 2: Jinja variable 'undefined_thing' is undefined" in \
        result["comment"]
    assert not (tmp_path / "x").exists()


def test_directory_states(tmp_path: Path, make_ctx: MakeContext) -> None:
    ctx = make_ctx([tmp_path / "srv"])
    deep = tmp_path / "a" / "b"
    refused = single(ctx, "file.directory", deep)
    assert (refused["result"], refused["comment"]) == (False, f"No directory to create {deep} in")
    made = single(ctx, "file.directory", deep, makedirs=True, mode=750)
    assert made["changes"] == {str(deep): {"directory": "new"}} and mode_of(deep) == 0o750
    again = single(ctx, "file.directory", deep, mode=750)
    assert again["comment"] == f"The directory {deep} is in the correct state"
    chmod = single(ctx, "file.directory", deep, dir_mode="0700")
    # As Salt 3008 (file.check_perms adds its keys beside the directory entry)
    assert chmod["changes"] == {str(deep): {"mode": "0700"}, "mode": "0700"}
    assert mode_of(deep) == 0o700
    (tmp_path / "f").write_text("x")
    clash = single(ctx, "file.directory", tmp_path / "f")
    assert clash["comment"] == f"Specified location {tmp_path / 'f'} exists and is a file"


def test_absent_states(tmp_path: Path, make_ctx: MakeContext) -> None:
    ctx = make_ctx([tmp_path / "srv"])
    (tmp_path / "f").write_text("x")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    dry = state_mod.single(ctx, "file.absent", str(tmp_path / "f"), test=True)
    assert list(dry.ret.values())[0]["result"] is None and (tmp_path / "f").exists()
    gone = single(ctx, "file.absent", tmp_path / "f")
    assert gone["changes"] == {"removed": str(tmp_path / "f")} and not (tmp_path / "f").exists()
    tree = single(ctx, "file.absent", tmp_path / "d")
    assert tree["comment"] == f"Removed directory {tmp_path / 'd'}" and not (tmp_path / "d").exists()
    assert single(ctx, "file.absent", tmp_path / "f")["comment"] == \
        f"File {tmp_path / 'f'} is not present"
    assert single(ctx, "file.absent", "/")["comment"] == 'Refusing to make "/" absent'


def test_symlink_states(tmp_path: Path, make_ctx: MakeContext) -> None:
    ctx = make_ctx([tmp_path / "srv"])
    link, first, second = tmp_path / "current", tmp_path / "v1", tmp_path / "v2"
    made = single(ctx, "file.symlink", link, target=str(first))
    assert made["changes"] == {"new": str(link)} and os.readlink(link) == str(first)
    assert single(ctx, "file.symlink", link, target=str(first))["changes"] == {}
    moved = single(ctx, "file.symlink", link, target=str(second))
    assert moved["comment"] == f"Set target of symlink {link} -> {second}"
    assert os.readlink(link) == str(second)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    refused = single(ctx, "file.symlink", blocker, target=str(first))
    assert refused["comment"] == f"File exists where the symlink {blocker} should be"
    forced = single(ctx, "file.symlink", blocker, target=str(first), force=True)
    assert forced["result"] is True and blocker.is_symlink()
