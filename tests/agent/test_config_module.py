"""Execution module ``config``: Salt's lookup order (agent config, grains, pillar, master config)."""

from __future__ import annotations

from typing import Any

import pytest

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.loader import Loader

PILLAR: dict[str, Any] = {
    "fleet": "pillar-fleet",
    "obd": {"baudrate": 115200, "protocol": "6"},
    "loggers": {"rpm": {"interval": 5}},
    "shared": "from pillar",
    "master": {"shared": "from master", "only_master": {"deep": 1}, "fleet": "master-fleet"},
}


def make_ctx(**opts: Any) -> AgentContext:
    ctx = AgentContext.create({"id": "car-0001", "obd": {"baudrate": 38400},
                               "loggers": {"speed": {"interval": 1}}, **opts},
                              grains={"id": "car-0001", "fleet": "grain-fleet",
                                      "obd": {"vin": "WVWZZZ1JZXW000001"}},
                              loader=Loader(entry_points=False))
    ctx.services["pillar"] = dict(PILLAR)
    return ctx


def test_first_match_in_salt_order() -> None:
    ctx = make_ctx()
    assert ctx.call("config.get", "obd:baudrate") == 38400  # the agent config wins
    assert ctx.call("config.get", "fleet") == "grain-fleet"  # then the grains
    assert ctx.call("config.get", "obd:protocol") == "6"  # nested: each key path on its own
    assert ctx.call("config.get", "shared") == "from pillar"  # pillar before master config
    assert ctx.call("config.get", "only_master:deep") == 1
    assert ctx.call("config.get", "nope") == ""
    assert ctx.call("config.get", "nope", default=7) == 7
    assert ctx.call("config.get", "obd/baudrate", delimiter="/") == 38400


def test_omitting_sources() -> None:
    ctx = make_ctx()
    assert ctx.call("config.get", "obd:baudrate", omit_opts=True) == 115200
    assert ctx.call("config.get", "fleet", omit_grains=True) == "pillar-fleet"
    assert ctx.call("config.get", "fleet", omit_grains=True, omit_pillar=True) == "master-fleet"
    assert ctx.call("config.get", "shared", omit_pillar=True, omit_master=True) == ""


def test_merge_strategies() -> None:
    ctx = make_ctx()
    # recurse: mappings merged key by key, the agent config on top
    assert ctx.call("config.get", "loggers", merge="recurse") == {
        "rpm": {"interval": 5}, "speed": {"interval": 1}}
    assert ctx.call("config.get", "obd", merge="recurse") == {
        "baudrate": 38400, "protocol": "6", "vin": "WVWZZZ1JZXW000001"}
    # overwrite: the top-level key of the higher source replaces the lower one whole
    assert ctx.call("config.get", "loggers", merge="overwrite") == {"speed": {"interval": 1}}
    with pytest.raises(Exception, match="not a merge strategy"):
        ctx.call("config.get", "loggers", merge="deep")


def test_option_and_wildcard() -> None:
    ctx = make_ctx()
    assert ctx.call("config.option", "fleet") == "grain-fleet"
    assert ctx.call("config.option", "obd:baudrate") == ""  # option does not traverse
    assert ctx.call("config.option", "nope", default=3) == 3
    assert ctx.call("config.option", "fleet", omit_all=True) == ""
    found = ctx.call("config.option", "fl*", wildcard=True)
    assert found == {"fleet": "grain-fleet"}  # grains win over pillar and master config
    assert ctx.call("config.option", "zz*", wildcard=True) == {}


def test_items_is_the_loaded_config() -> None:
    ctx = make_ctx()
    assert ctx.call("config.items")["obd"] == {"baudrate": 38400}
    assert ctx.call("config.items")["id"] == "car-0001"
