"""Product states: obd.logger (durable, picked up by a running LoggerSet), agent.config and
power.settings (drop-in checked by the schema, previous version kept, restart requested)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from autopi_agent.config import AGENT_SCHEMA, load_agent_config
from autopi_agent.minion.clock import ManualClock
from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.dispatch import Dispatcher
from autopi_agent.minion.loader import Loader
from autopi_agent.minion.loggers import LoggerSet
from autopi_agent.modules import state as state_mod
from autopi_agent.selfconfig import SelfConfig
from autopi_agent.state.managed_loggers import ManagedLoggers
from tests.agent.carmods import FakeCar
from tests.agent.test_loggers import ListSink
from tests.agent.test_schedule import until
from tests.state.conftest import STATE_MODULES, MakeContext, agent_context
from tests.state.test_service_pkg import by_id, write_tree

LOGGER_SLS = """
engine_fast:
  obd.logger:
    - pids: [RPM, SPEED, COOLANT_TEMP]
    - interval: 1
{% if pillar.get('volts', True) %}
volts:
  obd.logger:
    - function: obd.battery
    - value_key: voltage
    - interval: {{ pillar.get('volts_every', 10) }}
{% endif %}
"""


def logger_tree(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    return write_tree(tmp_path / "srv", {"loggers.sls": LOGGER_SLS,
                                         "gone.sls": "volts:\n  obd.logger_absent\n",
                                         "bad.sls": "x:\n  obd.logger:\n    - pids: [RPM]\n"
                                                    "    - interval: -1\n", **(extra or {})})


def test_obd_logger_declares_durably_and_is_idempotent(tmp_path: Path,
                                                       make_ctx: MakeContext) -> None:
    srv = logger_tree(tmp_path)
    ctx = make_ctx([srv])
    dry = state_mod.sls(ctx, "loggers", test=True)
    assert dry.retcode == 0 and {r["result"] for r in dry.ret.values()} == {None}
    store = ManagedLoggers(tmp_path / "cache")
    assert store.load() == {}
    first = by_id(state_mod.sls(ctx, "loggers").ret)
    assert first["engine_fast"]["changes"] == {
        "old": None, "new": {"pids": ["RPM", "SPEED", "COOLANT_TEMP"], "interval": 1}}
    assert store.load()["volts"] == {"function": "obd.battery", "value_key": "voltage",
                                     "interval": 10}
    again = state_mod.sls(ctx, "loggers")
    assert again.retcode == 0 and all(not r["changes"] for r in again.ret.values())
    changed = by_id(state_mod.sls(ctx, "loggers", pillar={"volts_every": 30}).ret)
    assert changed["volts"]["changes"]["old"]["interval"] == 10
    assert changed["volts"]["comment"] == "Logger volts changed"
    assert not changed["engine_fast"]["changes"]
    gone = by_id(state_mod.sls(ctx, "gone").ret)["volts"]
    assert gone["result"] is True and gone["changes"]["new"] is None
    assert sorted(store.load()) == ["engine_fast"]


def test_obd_logger_refuses_a_bad_definition_naming_the_key(tmp_path: Path,
                                                            make_ctx: MakeContext) -> None:
    ctx = make_ctx([logger_tree(tmp_path)])
    ret = state_mod.sls(ctx, "bad")
    (result,) = ret.ret.values()
    assert ret.retcode == 2 and result["result"] is False
    assert result["comment"] == "logger 'x': key 'interval': expected a number above 0, got -1"
    assert ManagedLoggers(tmp_path / "cache").load() == {}


def test_a_running_logger_set_picks_up_state_loggers_without_restart(tmp_path: Path) -> None:
    srv = logger_tree(tmp_path)
    cachedir = tmp_path / "cache"
    ctx = agent_context(cachedir, [srv], loggers={"volts": {"pids": ["RPM"], "interval": 5}})
    ctx.loader = Loader({**STATE_MODULES, "obd": "tests.agent.carmods"}, entry_points=False)
    ctx.services["car"] = FakeCar()

    async def scenario() -> None:
        dispatcher = Dispatcher(ctx)
        loggers = LoggerSet(dispatcher, ListSink(), ctx.opts["loggers"], clock=ManualClock(),
                            managed=ManagedLoggers(cachedir).load)
        ctx.services["loggers"] = loggers
        loggers.start()
        try:
            assert sorted(loggers.loggers) == ["volts"]
            ret = await asyncio.to_thread(state_mod.sls, ctx, "loggers")
            assert ret.retcode == 0, ret.ret
            note = by_id(ret.ret)["volts"]["comment"]
            assert note.endswith("(the agent config defines a logger of this name, which "
                                 "takes precedence)")
            await until(lambda: sorted(loggers.loggers) == ["engine_fast", "volts"], 30)
            # config > states: the config's "volts" is the one running
            assert loggers.loggers["volts"].spec.function == "obd.query_many"
            await asyncio.to_thread(state_mod.sls, ctx, "gone")
            assert sorted(loggers.loggers) == ["engine_fast", "volts"]
            write_tree(srv, {"off.sls": "engine_fast:\n  obd.logger:\n    - pids: [RPM, SPEED,"
                                        " COOLANT_TEMP]\n    - interval: 1\n    - enabled: False\n"})
            await asyncio.to_thread(state_mod.sls, ctx, "off")
            await until(lambda: sorted(loggers.loggers) == ["volts"], 30)
        finally:
            await loggers.stop()
            await dispatcher.aclose()

    asyncio.run(scenario())


# -- agent.config and power.settings --------------------------------------------------------


class Restarts:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


def config_ctx(tmp_path: Path, srv: Path, main: dict[str, Any]) -> tuple[AgentContext, Restarts]:
    conf = tmp_path / "etc" / "agent.yaml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(yaml.safe_dump(main))
    opts = {key: value for key, value in load_agent_config(conf).items()
            if key not in ("cachedir", "id", "file_roots", "pillar_roots", "grains")}
    ctx = agent_context(tmp_path / "cache", [srv], **opts)
    restarts = Restarts()
    ctx.services["restart"] = restarts
    return ctx, restarts


AGENT_SLS = """
agent settings:
  agent.config:
    - settings:
        heartbeat_interval: {{ pillar.get('beat', 20) }}
        grains: {fleet: taxis}
"""


def test_agent_config_writes_a_checked_dropin_and_requests_a_restart(tmp_path: Path) -> None:
    srv = write_tree(tmp_path / "srv", {"agent.sls": AGENT_SLS})
    ctx, restarts = config_ctx(tmp_path, srv, {"id": "car-0001", "master": "10.0.0.1",
                                               "grains": {"fleet": "vans", "color": "red"}})
    dropin = tmp_path / "etc" / "agent.d" / "50-states.yaml"
    dry = by_id(state_mod.sls(ctx, "agent", test=True).ret)["agent settings"]
    assert dry["result"] is None and not dropin.exists() and restarts.reasons == []
    assert dry["changes"]["heartbeat_interval"] == {"old": 15.0, "new": 20.0}
    ret = by_id(state_mod.sls(ctx, "agent").ret)["agent settings"]
    assert ret["result"] is True, ret
    # Sections merge over the main file's: color stays, fleet changes.
    assert ret["changes"]["grains"] == {"old": {"fleet": "vans", "color": "red"},
                                        "new": {"fleet": "taxis", "color": "red"}}
    assert restarts.reasons == ["agent.config changed grains, heartbeat_interval"]
    opts = load_agent_config(tmp_path / "etc" / "agent.yaml")
    assert opts["heartbeat_interval"] == 20 and opts["grains"]["fleet"] == "taxis"
    assert opts["master"] == "10.0.0.1"
    selfconfig = SelfConfig.from_opts(opts)
    assert selfconfig is not None and selfconfig.trial() is not None
    assert selfconfig.previous.is_file() and yaml.safe_load(selfconfig.previous.read_text()) \
        is None
    again = by_id(state_mod.sls(ctx, "agent").ret)["agent settings"]
    assert again["result"] is True and again["changes"] == {} and len(restarts.reasons) == 1


def test_agent_config_refuses_a_bad_value_and_changes_nothing(tmp_path: Path) -> None:
    srv = write_tree(tmp_path / "srv", {"agent.sls": AGENT_SLS})
    ctx, restarts = config_ctx(tmp_path, srv, {"id": "car-0001"})
    ret = by_id(state_mod.sls(ctx, "agent", pillar={"beat": "often"}).ret)["agent settings"]
    assert ret["result"] is False and ret["changes"] == {}
    assert "50-states.yaml: key 'heartbeat_interval': expected a number, got 'often'" \
        in ret["comment"]
    assert not (tmp_path / "etc" / "agent.d").exists() and restarts.reasons == []


def test_selfconfig_rollback_restores_the_last_confirmed_dropin(tmp_path: Path) -> None:
    conf = tmp_path / "agent.yaml"
    conf.write_text("id: car-0001\n")
    selfconfig = SelfConfig(conf, AGENT_SCHEMA)
    selfconfig.write({"heartbeat_interval": 20})
    selfconfig.confirm()
    selfconfig.write({"heartbeat_interval": 30})
    selfconfig.write({"heartbeat_interval": 40})  # still on trial: .prev keeps 20
    assert selfconfig.count_start() is not None
    selfconfig.rollback("test")
    assert selfconfig.trial() is None
    assert load_agent_config(conf)["heartbeat_interval"] == 20


def test_a_later_dropin_wins_and_errors_name_their_file(tmp_path: Path) -> None:
    conf = tmp_path / "agent.yaml"
    conf.write_text("id: car-0001\nheartbeat_interval: 11\n")
    write_tree(tmp_path / "agent.d", {"50-states.yaml": "heartbeat_interval: 20\n",
                                      "90-local.yaml": "heartbeat_interval: 30\n",
                                      "README": "not read\n"})
    assert load_agent_config(conf)["heartbeat_interval"] == 30
    (tmp_path / "agent.d" / "95-bad.conf").write_text("auth_tries: many\n")
    with pytest.raises(ValueError, match=r"95-bad.conf: key 'auth_tries': expected an integer"):
        load_agent_config(conf)


def test_power_settings_go_through_the_agent_config(tmp_path: Path) -> None:
    srv = write_tree(tmp_path / "srv", {
        "power.sls": "sleep sooner:\n  power.settings:\n    - sleep_after: 900\n"
                     "    - wake_triggers: [ignition]\n",
        "bad.sls": "too low:\n  power.settings:\n    - low_voltage: lots\n"})
    ctx, restarts = config_ctx(tmp_path, srv, {"id": "car-0001",
                                               "power": {"enabled": True, "low_voltage": 12.0}})
    bad = by_id(state_mod.sls(ctx, "bad").ret)["too low"]
    assert bad["result"] is False and "key 'power.low_voltage': expected a number, got 'lots'" \
        in bad["comment"]
    ret = by_id(state_mod.sls(ctx, "power").ret)["sleep sooner"]
    assert ret["result"] is True, ret
    power = load_agent_config(tmp_path / "etc" / "agent.yaml")["power"]
    assert power["sleep_after"] == 900 and power["wake_triggers"] == ["ignition"]
    assert power["enabled"] is True and power["low_voltage"] == 12.0  # the main file's stay
    assert restarts.reasons == ["agent.config changed power"]
    again = by_id(state_mod.sls(ctx, "power").ret)["sleep sooner"]
    assert again["changes"] == {} and len(restarts.reasons) == 1
