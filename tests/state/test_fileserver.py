"""The master's file server (Salt's roots replies, traversal refused) and the agent's caching
file client talking to it."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.fileclient import RemoteFileClient
from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.loader import Loader
from autopi_agent.modules import state as state_mod
from autopi_proto.messages import OpenedRequest
from cloud_master.fileserver import FileServer
from cloud_master.pillar import PillarCompiler
from tests.state.conftest import STATE_MODULES
from tests.state.test_service_pkg import write_tree


def server(tmp_path: Path, **opts: Any) -> tuple[FileServer, Path]:
    base = write_tree(tmp_path / "salt", {
        "top.sls": "base:\n  '*':\n    - web\n",
        "web/init.sls": "web:\n  test.nop\n",
        "web/files/big.bin": "",
        "other.sls": "o:\n  test.nop\n",
    })
    (base / "web" / "files" / "big.bin").write_bytes(bytes(range(256)) * 40)
    (base / "empty").mkdir()
    dev = write_tree(tmp_path / "dev", {"dev.sls": "d:\n  test.nop\n"})
    (tmp_path / "secret.txt").write_text("outside the root\n")
    os.symlink(tmp_path / "secret.txt", base / "escape.txt")
    return FileServer({"file_roots": {"base": [str(base)], "dev": [str(dev)]}, **opts}), base


def ask(fileserver: FileServer, load: dict[str, Any], minion: str = "car-0001") -> Any:
    handler = fileserver.handlers()[load["cmd"]]
    return asyncio.run(handler(OpenedRequest(minion, load, "n" * 32, "OAEP-SHA224",
                                             "PKCS1v15-SHA224")))


def test_listings_match_salt_roots(tmp_path: Path) -> None:
    fs, _ = server(tmp_path)
    assert ask(fs, {"cmd": "_file_envs"}) == ["base", "dev"]
    assert ask(fs, {"cmd": "_file_list", "saltenv": "base", "prefix": ""}) == [
        "other.sls", "top.sls", "web/files/big.bin", "web/init.sls"]
    assert ask(fs, {"cmd": "_file_list", "saltenv": "base", "prefix": "web/"}) == [
        "web/files/big.bin", "web/init.sls"]
    assert ask(fs, {"cmd": "_dir_list", "saltenv": "base"}) == ["", "empty", "web", "web/files"]
    assert ask(fs, {"cmd": "_file_list_emptydirs", "saltenv": "base"}) == ["empty"]
    assert ask(fs, {"cmd": "_file_list", "saltenv": "nope"}) == []
    assert ask(fs, {"cmd": "_master_tops", "id": "car-0001"}) == {}


def test_hash_and_chunked_serving(tmp_path: Path) -> None:
    fs, base = server(tmp_path, file_buffer_size=4000)
    data = (base / "web" / "files" / "big.bin").read_bytes()
    assert ask(fs, {"cmd": "_file_hash", "saltenv": "base", "path": "web/files/big.bin"}) == {
        "hsum": hashlib.sha256(data).hexdigest(), "hash_type": "sha256"}
    chunks, loc = [], 0
    while True:
        reply = ask(fs, {"cmd": "_serve_file", "saltenv": "base", "path": "web/files/big.bin",
                         "loc": loc})
        assert reply["dest"] == "web/files/big.bin"
        if not reply["data"]:
            break
        chunks.append(reply["data"])
        loc += len(reply["data"])
    assert len(chunks) == 3 and b"".join(chunks) == data
    zipped = ask(fs, {"cmd": "_serve_file", "saltenv": "base", "path": "web/init.sls", "loc": 0,
                      "gzip": 5})
    assert zipped["gzip"] == 5 and gzip.decompress(zipped["data"]) == b"web:\n  test.nop\n"
    found = ask(fs, {"cmd": "_file_find", "saltenv": "base", "path": "web/init.sls"})
    assert found["rel"] == "web/init.sls" and found["stat"][6] == 16


@pytest.mark.parametrize("path", ["../secret.txt", "/etc/passwd", "web/../../secret.txt",
                                  "escape.txt", "web/\x00init.sls", "salt://../secret.txt",
                                  "web/init.sls?saltenv=../../"])
def test_path_traversal_refused(tmp_path: Path, path: str) -> None:
    fs, _ = server(tmp_path)
    assert ask(fs, {"cmd": "_file_hash", "saltenv": "base", "path": path}) == ""
    assert ask(fs, {"cmd": "_serve_file", "saltenv": "base", "path": path, "loc": 0}) == {
        "data": "", "dest": ""}
    assert ask(fs, {"cmd": "_file_find", "saltenv": "base", "path": path})["path"] == ""


def bridge(fs: FileServer, pillar: PillarCompiler | None = None, log: list[str] | None = None) -> Any:
    """A master_call that answers through the real file server handlers."""
    def master_call(load: dict[str, Any], private: str | None = None, timeout: float = 60) -> Any:
        if log is not None:
            log.append(load["cmd"])
        if load["cmd"] == "_pillar":
            return pillar.compile(load["id"], load["grains"]) if pillar else {}
        return ask(fs, load)
    return master_call


def test_client_caches_by_hash_and_fetches_only_changes(tmp_path: Path) -> None:
    fs, base = server(tmp_path)
    cachedir = tmp_path / "agent-cache"
    first = RemoteFileClient(bridge(fs), cachedir)
    path = first.cache_file("salt://web/init.sls", "base")
    assert path is not None and path.read_text() == "web:\n  test.nop\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and first.downloads == 1
    assert first.cache_file("web/files/big.bin", "base").read_bytes() == \
        (base / "web" / "files" / "big.bin").read_bytes()
    second = RemoteFileClient(bridge(fs), cachedir)  # the next state run
    assert second.cache_file("web/init.sls", "base") == path and second.downloads == 0
    (base / "web" / "init.sls").write_text("web:\n  test.succeed_with_changes\n")
    third = RemoteFileClient(bridge(fs), cachedir)
    assert third.cache_file("web/init.sls", "base").read_text().endswith("changes\n")
    assert third.downloads == 1
    assert third.cache_file("salt://nothing.sls", "base") is None
    assert third.cache_file("../secret.txt", "base") is None
    assert third.list_states("base") == ["other", "top", "web"]
    assert RemoteFileClient(bridge(fs), cachedir).list_states("dev") == ["dev"]


def test_state_apply_from_the_master_is_idempotent(tmp_path: Path) -> None:
    out = tmp_path / "out"
    fs, base = server(tmp_path)
    write_tree(base, {"web/init.sls": f"""
{out}/site.conf:
  file.managed:
    - source: salt://web/site.conf.j2
    - template: jinja
    - makedirs: True
""", "web/site.conf.j2": "server {{{{ grains['id'] }}}} {{{{ pillar['port'] }}}}\n".replace(
        "{{{{", "{{").replace("}}}}", "}}")})
    pillar_root = write_tree(tmp_path / "pillar", {"top.sls": "base:\n  '*':\n    - p\n",
                                                   "p.sls": "port: 8080\n"})
    compiler = PillarCompiler({"pillar_roots": {"base": [str(pillar_root)]}})
    sent: list[str] = []
    ctx = AgentContext.create({"id": "car-0001", "cachedir": str(tmp_path / "agent")},
                              grains={"id": "car-0001"},
                              loader=Loader(STATE_MODULES, entry_points=False))
    ctx.services["master_call"] = bridge(fs, compiler, sent)
    first = state_mod.apply_(ctx)
    assert first.retcode == 0, first.ret
    assert (out / "site.conf").read_text() == "server car-0001 8080\n"
    # top.sls, web/init.sls and the template: one data chunk and the empty end each
    assert sent.count("_serve_file") == 6
    # The reachability probe is the highstate's only environments request.
    assert sent.count("_file_envs") == 1
    sent.clear()
    second = state_mod.apply_(ctx)
    assert all(not result["changes"] for result in second.ret.values())
    assert "_serve_file" not in sent and sent.count("_pillar") == 1


def test_master_unreachable_means_a_clear_error_and_no_change(tmp_path: Path) -> None:
    from autopi_agent.transport import RequestTimeout

    def offline(load: dict[str, Any], private: str | None = None, timeout: float = 60) -> Any:
        raise RequestTimeout("no reply from tcp://127.0.0.1:4506 within 60 s")

    ctx = AgentContext.create({"id": "car-0001", "cachedir": str(tmp_path / "agent")},
                              grains={"id": "car-0001"},
                              loader=Loader(STATE_MODULES, entry_points=False))
    ctx.services["master_call"] = offline
    for ret in (state_mod.apply_(ctx), state_mod.show_lowstate(ctx)):
        assert ret.retcode == 1
        assert ret.ret == ["The state files could not be fetched from the master (RequestTimeout:"
                           " no reply from tcp://127.0.0.1:4506 within 60 s); nothing was "
                           "changed, try again when online"]
