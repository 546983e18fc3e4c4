"""The reactor: events trigger jobs, runners and webhooks; failures and loops are contained."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from cloud_master.reactor import (
    Reactor,
    ReactorConfigError,
    ReactorMaster,
    check_reactor,
    load_defaults,
    parse_rules,
    rules_from_opts,
)
from cloud_master.runners.presence import Presence
from cloud_master.server import Master
from tests.inproc import running_agent, running_master, until


@contextlib.asynccontextmanager
async def reacting(master: Master, rules: Any, **kwargs: Any) -> AsyncIterator[Reactor]:
    """A reactor wired into ``master`` (what the master does itself once hooked up)."""
    if not isinstance(vars(master).get("presence"), Presence):  # before the master owns one
        vars(master)["presence"] = Presence()
    reactor = Reactor(cast(ReactorMaster, master), rules, **kwargs)
    task = reactor.start()
    await asyncio.sleep(0)  # let it subscribe before the test fires events
    try:
        yield reactor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append((self.path, dict(self.headers), body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def webhook_server(status: int = 200) -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- configuration ------------------------------------------------------------------------

def test_defaults_ship_dtc_query_and_start_highstate() -> None:
    defaults = load_defaults()
    assert defaults["dtc_query"][0].tag == "vehicle/*/dtc/new"
    assert defaults["dtc_query"][0].reactions[0]["local"] == "obd.dtc"
    assert defaults["start_highstate"][0].reactions[0]["local"] == "state.apply"


def test_defaults_are_switchable_and_config_rules_follow() -> None:
    assert len(rules_from_opts({})) == 2
    assert rules_from_opts({"reactor_defaults": []}) == []
    rules = rules_from_opts({"reactor_defaults": ["dtc_query"],
                             "reactor": [{"a/*": [{"runner": "manage.up"}]}]})
    assert [(r.tag, r.source) for r in rules] == [("vehicle/*/dtc/new", "default:dtc_query"),
                                                   ("a/*", "reactor")]
    with pytest.raises(ReactorConfigError, match="unknown"):
        rules_from_opts({"reactor_defaults": ["nope"]})


@pytest.mark.parametrize(("entries", "match"), [
    ({"a": []}, "expected a list"),
    ([["a"]], "mapping of tag glob"),
    ([{"a/*": [{"local": "x", "runner": "y"}]}], "exactly one of"),
    ([{"a/*": [{"local": "test.ping", "tgtt": "x"}]}], r"unknown keys \['tgtt'\]"),
    ([{"a/*": [{"runner": ""}]}], "non-empty string"),
    ([{"a/*": [{"runner": "jobs.list", "arg": "x"}]}], "arg must be a list"),
    ([{"a/*": "local"}], "expected a list of reactions"),
])
def test_malformed_reactor_config_is_named(entries: Any, match: str) -> None:
    with pytest.raises(ReactorConfigError, match=match):
        parse_rules(entries, "reactor")
    assert check_reactor(entries) is not None


def test_a_single_reaction_mapping_is_accepted() -> None:
    rules = parse_rules([{"a/*": {"runner": "jobs.list"}}], "reactor")
    assert rules[0].reactions == ({"runner": "jobs.list"},)
    assert check_reactor([{"a/*": {"runner": "jobs.list"}}]) is None


# -- reactions against a real master and agents ---------------------------------------------

def test_dtc_event_from_a_vehicle_runs_obd_dtc_on_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
            async with running_agent(tmp_path / "a", master, "car-a") as car_a, \
                    running_agent(tmp_path / "b", master, "car-b"):
                rules = rules_from_opts({"reactor_defaults": ["dtc_query"]})
                async with reacting(master, rules) as reactor:
                    await car_a.fire_event("vehicle/car-a/dtc/new", {"codes": ["P0300"]})
                    job = await until(lambda: next(
                        (j for j in master.jobcache.list_jobs() if j.fun == "obd.dtc"), None), 20)
                    assert job.tgt == "car-a" and job.minions == ["car-a"]
                    assert job.user == "reactor"
                    record = await until(lambda: (r := master.jobcache.get_job(job.jid))
                                         and r.returns and r, 60)
                    assert list(record.returns) == ["car-a"]
                    assert reactor.stats.done == 1 and reactor.stats.failed == 0

    asyncio.run(scenario())


def test_minion_start_applies_the_highstate(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
            rules = rules_from_opts({"reactor_defaults": ["start_highstate"]})
            async with reacting(master, rules) as reactor:
                master.events.fire("salt/minion/car-z/start", {"id": "car-z", "data": "started"})
                await until(lambda: reactor.stats.done == 1)
                jobs = master.jobcache.list_jobs()
                assert [(j.fun, j.tgt) for j in jobs] == [("state.apply", "car-z")]

    asyncio.run(scenario())


def test_a_failing_reaction_is_logged_and_the_next_event_is_handled(tmp_path: Path) -> None:
    rules = parse_rules([
        {"boom/*": [{"runner": "jobs.lookup_jid", "arg": ["{{ data.jid }}"]},
                    {"local": "test.ping", "tgt": "{{ data.no_such_key }}"},
                    {"runner": "no_such.runner"}]},
        {"fine/*": [{"local": "test.echo", "tgt": "{{ data.id }}", "arg": ["{{ tag }}"]}]},
    ], "reactor")

    async def scenario() -> None:
        async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
            async with reacting(master, rules) as reactor:
                with capture_logs() as logs:
                    master.events.fire("boom/1", {"jid": "20000101000000000000"})
                    await until(lambda: reactor.stats.failed == 3)
                    master.events.fire("fine/1", {"id": "car-q"})
                    await until(lambda: reactor.stats.done == 1)
                failures = [e for e in logs if e["event"] == "reactor.reaction_failed"]
                assert len(failures) == 3
                assert any("JobNotFound" in e["error"] for e in failures)
                assert any("no_such_key" in e["error"] for e in failures)
                jobs = master.jobcache.list_jobs()
                assert [(j.fun, j.tgt, j.arg) for j in jobs] == [("test.echo", "car-q", ["fine/1"])]

    asyncio.run(scenario())


def test_webhook_posts_the_rendered_body_and_keeps_the_url_out_of_logs(tmp_path: Path) -> None:
    async def scenario() -> None:
        with webhook_server() as (base, hook):
            rules = parse_rules([{"vehicle/*/ignition/on": [{
                "webhook": base + "/hook?token=s3cret",
                "body": {"vehicle": "{{ data.id }}", "tag": "{{ tag }}"},
                "headers": {"X-Fleet": "{{ data.id }}"}}]}], "reactor")
            async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
                async with reacting(master, rules) as reactor:
                    with capture_logs() as logs:
                        master.events.fire("vehicle/car-a/ignition/on", {"id": "car-a"})
                        await until(lambda: reactor.stats.done == 1)
            path, headers, body = hook.received[0]
            assert path == "/hook?token=s3cret"
            assert json.loads(body) == {"vehicle": "car-a", "tag": "vehicle/car-a/ignition/on"}
            assert headers["X-Fleet"] == "car-a"
            assert headers["Content-Type"] == "application/json"
            assert "s3cret" not in repr(logs)

    asyncio.run(scenario())


def test_webhook_error_status_is_a_failed_reaction(tmp_path: Path) -> None:
    async def scenario() -> None:
        with webhook_server(status=500) as (base, hook):
            rules = parse_rules([{"x/*": [{"webhook": base + "/down"}]}], "reactor")
            async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
                async with reacting(master, rules, webhook_timeout=5) as reactor:
                    master.events.fire("x/1", {"id": "car-a"})
                    await until(lambda: reactor.stats.failed == 1)
            assert json.loads(hook.received[0][2])["tag"] == "x/1"  # default body: the event
            assert reactor.stats.done == 0

    asyncio.run(scenario())


def test_non_http_webhook_is_refused(tmp_path: Path) -> None:
    rules = parse_rules([{"x/*": [{"webhook": "file:///etc/passwd"}]}], "reactor")

    async def scenario() -> None:
        async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
            async with reacting(master, rules) as reactor:
                with capture_logs() as logs:
                    master.events.fire("x/1", {})
                    await until(lambda: reactor.stats.failed == 1)
        assert any("http(s)" in str(e.get("error")) for e in logs)

    asyncio.run(scenario())


def test_rate_limit_per_tag_drops_a_storm(tmp_path: Path) -> None:
    rules = parse_rules([{"storm/*": [{"runner": "jobs.list"}]}], "reactor")

    async def scenario() -> None:
        async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
            async with reacting(master, rules, rate_limit=3) as reactor:
                for _ in range(10):
                    master.events.fire("storm/a", {})
                master.events.fire("storm/b", {})
                await until(lambda: reactor.stats.rate_limited == 7 and reactor.stats.done == 4)
                await reactor.idle()
                assert reactor.stats.done == 4

    asyncio.run(scenario())


def test_a_reaction_triggered_by_its_own_events_is_stopped(tmp_path: Path) -> None:
    # Every job it publishes fires salt/job/<new jid>/new, which matches its own rule again.
    rules = parse_rules([{"salt/job/*/new": [{"local": "test.ping", "tgt": "nobody"}]}], "reactor")

    async def scenario() -> None:
        async with running_master(tmp_path / "m", reactor_defaults=[]) as master:
            async with reacting(master, rules, rule_rate_limit=5) as reactor:
                master.events.fire("salt/job/1/new", {})
                await until(lambda: reactor.stats.rate_limited >= 1)
                await reactor.idle()
                reactor_jobs = [j for j in master.jobcache.list_jobs() if j.user == "reactor"]
                assert len(reactor_jobs) == 5

    asyncio.run(scenario())
