"""Pillar: rendered per minion from pillar_roots, merged as Salt does, cached for offline use."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.loader import Loader
from autopi_agent.modules import pillar as pillar_mod
from autopi_agent.modules import state as state_mod
from autopi_agent.state.sources import PILLAR_CACHE, pillar_for, refresh_pillar
from autopi_common.sls.pillar import PillarRenderer, merge_recursive
from autopi_common.sls.roots import FileRoots
from cloud_master.pillar import PillarCompiler
from tests.state.conftest import STATE_MODULES, MakeContext
from tests.state.test_service_pkg import write_tree

TREE = {
    "top.sls": """
base:
  '*':
    - common
  'role:gateway':
    - match: grain
    - gateway
  'car-00*':
    - cars.*
""",
    "common/init.sls": """
include:
  - .defaults
  - common.nested:
      key: deep:er
      defaults:
        who: included
common:
  id: {{ grains['id'] }}
  over: top
  list: [1, 2]
""",
    "common/defaults.sls": "common:\n  over: defaults\n  kept: true\n  list: [9]\n",
    "common/nested.sls": "value: {{ who }}\n",
    "gateway.sls": "gateway: {{ salt['grains.get']('role') }}\n",
    "cars/a.sls": "cars: {a: 1, both: a}\n",
    "cars/b.sls": "cars: {b: 2, both: b}\n",
}


def renderer(tmp_path: Path, files: dict[str, str] | None = None) -> PillarRenderer:
    return PillarRenderer(FileRoots({"base": [write_tree(tmp_path / "pillar", files or TREE)]}))


def test_pillar_top_includes_and_recursive_merge(tmp_path: Path) -> None:
    pillar = renderer(tmp_path).compile("car-0001", {"id": "car-0001", "role": "gateway"})
    assert pillar == {
        "common": {"over": "top", "kept": True, "list": [1, 2], "id": "car-0001"},
        "deep": {"er": {"value": "included"}},
        "gateway": "gateway",
        "cars": {"a": 1, "b": 2, "both": "b"},
    }


def test_pillar_differs_per_minion(tmp_path: Path) -> None:
    pillars = renderer(tmp_path)
    other = pillars.compile("truck-7", {"id": "truck-7", "role": "logger"})
    assert set(other) == {"common", "deep"} and other["common"]["id"] == "truck-7"


def test_pillar_problems_go_to_errors_not_exceptions(tmp_path: Path) -> None:
    pillar = renderer(tmp_path, {
        "top.sls": "base:\n  '*':\n    - good\n    - missing\n    - bad\n    - notdict\n",
        "good.sls": "good: 1\n",
        "bad.sls": "x: {{ undefined }}\n",
        "notdict.sls": "- a list\n",
    }).compile("m", {})
    assert pillar["good"] == 1
    errors = pillar["_errors"]
    assert errors[0] == "Specified SLS 'missing' in environment 'base' is not available on " \
        "the salt master"
    assert errors[1].startswith("Rendering SLS 'bad' failed, render error:\nbase:bad.sls "
                                "(pillar), line 1: Jinja variable 'undefined' is undefined")
    assert errors[2] == "SLS 'notdict' does not render to a dictionary"


def test_master_pillar_compiler(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "pillar", TREE)
    compiler = PillarCompiler({"pillar_roots": {"base": [str(root)]}})
    pillar = compiler.compile("car-0002", {"id": "car-0002"}, override={"extra": {"k": 1}})
    assert pillar["common"]["id"] == "car-0002" and pillar["extra"] == {"k": 1}
    assert "gateway" not in pillar


def test_merge_recursive_replaces_lists_and_keeps_inputs() -> None:
    base = {"a": {"b": 1, "l": [1]}, "x": 1}
    merged = merge_recursive(base, {"a": {"c": 2, "l": [2]}, "x": {"y": 1}})
    assert merged == {"a": {"b": 1, "c": 2, "l": [2]}, "x": {"y": 1}}
    assert base == {"a": {"b": 1, "l": [1]}, "x": 1}


def remote_ctx(tmp_path: Path, master_call: Any) -> AgentContext:
    ctx = AgentContext.create({"id": "car-0001", "cachedir": str(tmp_path / "cache")},
                              grains={"id": "car-0001"},
                              loader=Loader(STATE_MODULES, entry_points=False))
    ctx.services["master_call"] = master_call
    return ctx


def test_pillar_cached_atomically_and_used_offline(tmp_path: Path) -> None:
    sent: list[tuple[dict[str, Any], Any]] = []

    def online(load: dict[str, Any], private: str | None = None, timeout: float = 60) -> Any:
        sent.append((load, private))
        return {"api": {"token": "s3cr3t"}, "fleet": "berlin"}

    assert pillar_for(remote_ctx(tmp_path, online), refresh=True)["fleet"] == "berlin"
    load, private = sent[0]
    assert private == "pillar" and load["cmd"] == "_pillar" and load["id"] == "car-0001"
    assert load["grains"] == {"id": "car-0001"}
    cache = tmp_path / "cache" / PILLAR_CACHE
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600

    def offline(load: dict[str, Any], private: str | None = None, timeout: float = 60) -> Any:
        raise TimeoutError("no reply from the master")

    ctx = remote_ctx(tmp_path, offline)  # a restarted agent: nothing in memory
    assert pillar_mod.get(ctx, "api:token") == "s3cr3t"
    assert refresh_pillar(ctx) is False
    assert pillar_mod.items(ctx) == {"api": {"token": "**********"}, "fleet": "**********"}
    assert pillar_mod.items(ctx, unmask=True)["api"] == {"token": "s3cr3t"}
    assert pillar_mod.item(ctx, "fleet", "nope") == {"fleet": "berlin", "nope": ""}
    assert pillar_mod.raw(ctx, "fleet") == "berlin"


def test_states_refuse_to_run_on_broken_pillar(tmp_path: Path, make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {"a.sls": "x:\n  test.succeed_with_changes\n"})
    pillar = write_tree(tmp_path / "pillar", {"top.sls": "base:\n  '*':\n    - bad\n",
                                              "bad.sls": "x: {{ undefined }}\n"})
    ret = state_mod.sls(make_ctx([srv], [pillar]), "a")
    assert ret.retcode == 5
    assert ret.ret[0] == "Pillar failed to render with the following messages:"
    assert "Jinja variable 'undefined' is undefined" in ret.ret[1]


@pytest.mark.parametrize("minion_id, expected", [("car-0001", ["common", "gateway", "cars.*"]),
                                                 ("bus-1", ["common", "gateway"])])
def test_pillar_top_matches(tmp_path: Path, minion_id: str, expected: list[str]) -> None:
    matches = renderer(tmp_path).matches(minion_id, {"role": "gateway"})
    assert matches == {"base": expected}
