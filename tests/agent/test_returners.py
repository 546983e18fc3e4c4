"""Returners: the table and entry points, fan-out that contains failures, jsonl rotation,
syslog datagrams on a real socket, the log and master returners."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from autopi_agent.minion.context import AgentContext
from autopi_agent.minion.loader import Loader
from autopi_agent.returners import (
    BUILTIN_RETURNERS,
    ReturnerConfigError,
    Returners,
    UnknownReturner,
    extra_names,
    parse_names,
)
from autopi_agent.returners.jsonl import JsonlReturner
from autopi_agent.returners.syslog import NullReturner, SyslogReturner, parse_address
from autopi_proto.messages import JobReturn
from tests.agent.carmods import ListReturner

TABLE = {**BUILTIN_RETURNERS, "keep": "tests.agent.carmods:list_returner",
         "broken": "tests.agent.carmods:broken_returner",
         "slow": "tests.agent.carmods:slow_returner",
         "exploding": "tests.agent.carmods:exploding_factory"}


def make_ctx(tmp_path: Path, **returners: Any) -> AgentContext:
    return AgentContext.create({"id": "car-0001", "cachedir": str(tmp_path / "cache"),
                                "returners": returners}, loader=Loader(entry_points=False))


def job_return(n: int = 0, ret: Any = True) -> JobReturn:
    return JobReturn("car-0001", f"2024010100000000000{n}", "test.ping", ret, 0, True, [])


def test_names_from_salt_ret_strings() -> None:
    assert parse_names("jsonl, syslog,,jsonl") == ["jsonl", "syslog"]
    assert parse_names(["log", " log "]) == ["log"]
    assert parse_names("") == parse_names(None) == []
    assert extra_names("master,jsonl,spool") == ["jsonl"]


def test_the_table_and_unknown_names(tmp_path: Path) -> None:
    returners = Returners(make_ctx(tmp_path), TABLE, entry_points=False)
    assert {"master", "spool", "jsonl", "syslog", "log"} <= set(returners.names())
    with pytest.raises(UnknownReturner, match="no returner named 'mysql'; known: broken"):
        returners.get("mysql")
    with pytest.raises(UnknownReturner, match="RuntimeError: no collector library"):
        returners.get("exploding")
    assert returners.get("keep") is returners.get("keep")  # made once per agent


def test_entry_points_add_returners_and_builtins_win(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "car_returner-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: car-returner\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[autopi_agent.returners]\nplugged = car_returner_mod:make\nlog = car_returner_mod:make\n"
        "plain = car_returner_mod\n")
    (tmp_path / "car_returner_mod.py").write_text(
        "from tests.agent.carmods import ListReturner\n\n"
        "def make(ctx, settings):\n    return ListReturner(ctx)\n\n"
        "def create(ctx, settings):\n    return ListReturner(ctx)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ctx = make_ctx(tmp_path)

    async def main() -> None:
        returners = Returners(ctx)
        assert {"plugged", "plain"} <= set(returners.names())
        assert isinstance(returners.get("plugged"), ListReturner)
        assert isinstance(returners.get("plain"), ListReturner)
        assert not isinstance(returners.get("log"), ListReturner)
        assert await returners.deliver(job_return(), ["plugged", "plain"]) == \
            {"plugged": None, "plain": None}
        assert "plugged" not in Returners(ctx, entry_points=False).names()

    asyncio.run(main())
    assert len(ctx.services["returned"]) == 2


def test_a_failing_or_slow_returner_never_holds_up_the_others(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, slow={"timeout": 0.2}, syslog={"facility": "nowhere"})

    async def main() -> dict[str, str | None]:
        returners = Returners(ctx, TABLE, entry_points=False)
        try:
            with capture_logs() as logs:
                outcome = await returners.deliver(
                    job_return(), ["broken", "slow", "keep", "nope", "syslog", "keep"])
        finally:
            await returners.aclose()
        failed = {entry["returner"] for entry in logs if entry["event"] == "returner.failed"}
        assert failed == {"broken", "slow", "nope", "syslog"}
        return outcome

    outcome = asyncio.run(main())
    assert outcome["keep"] is None
    assert outcome["broken"] == "ConnectionError: the collector is down"
    assert outcome["slow"] == "no answer within 0.2 s"
    assert outcome["nope"] is not None and "no returner named 'nope'" in outcome["nope"]
    assert outcome["syslog"] is not None and "facility must be one of" in outcome["syslog"]
    assert [ret.jid for ret in ctx.services["returned"]] == [job_return().jid]


def test_jsonl_rotates_by_size_and_keeps_n_backups(tmp_path: Path) -> None:
    returner = JsonlReturner(tmp_path / "returns", max_bytes=400, backups=2, fsync="rotate")

    async def main() -> None:
        for n in range(20):
            await returner.send(job_return(n % 10, ret={"n": n}))
        await returner.aclose()

    asyncio.run(main())
    files = returner.files()
    assert [path.name for path in files] == ["returns.jsonl", "returns.jsonl.1", "returns.jsonl.2"]
    assert not (tmp_path / "returns" / "returns.jsonl.3").exists()
    numbers = []
    for path in reversed(files):  # oldest first
        assert path.stat().st_size <= 400
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert record["id"] == "car-0001" and record["fun"] == "test.ping"
            assert "cmd" not in record and isinstance(record["ts"], float)
            numbers.append(record["return"]["n"])
    assert numbers == list(range(20 - len(numbers), 20))  # the newest kept, in order
    assert len(numbers) < 20  # the oldest were rotated away
    assert stat.S_IMODE((tmp_path / "returns").stat().st_mode) == 0o700


def test_jsonl_appends_across_reopen_and_without_backups(tmp_path: Path) -> None:
    first = JsonlReturner(tmp_path, filename="r.jsonl", max_bytes=10_000, backups=0, fsync="never")
    first.append(b'{"a":1}\n')
    first.close()
    again = JsonlReturner(tmp_path, filename="r.jsonl", max_bytes=12, backups=0)
    again.append(b'{"b":2}\n')  # 8 + 8 > 12: rotated away, nothing kept as backup
    again.close()
    assert (tmp_path / "r.jsonl").read_bytes() == b'{"b":2}\n'
    assert [path.name for path in again.files()] == ["r.jsonl"]
    big = JsonlReturner(tmp_path, filename="big.jsonl", max_bytes=4, backups=1)
    big.append(b'{"long":"line"}\n')  # longer than max_bytes: written alone
    big.close()
    assert (tmp_path / "big.jsonl").read_bytes() == b'{"long":"line"}\n'


def test_jsonl_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ReturnerConfigError, match="fsync"):
        JsonlReturner(tmp_path, fsync="sometimes")
    returners = Returners(make_ctx(tmp_path, jsonl={"max_bytes": "big"}), entry_points=False)
    with pytest.raises(ReturnerConfigError, match="returners.jsonl.max_bytes"):
        returners.get("jsonl")
    returners = Returners(make_ctx(tmp_path, jsonl={"colour": 1}), entry_points=False)
    with pytest.raises(ReturnerConfigError, match="unknown setting"):
        returners.get("jsonl")


def test_jsonl_default_place_is_under_the_cachedir(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)

    async def main() -> None:
        returners = Returners(ctx, entry_points=False)
        assert await returners.deliver(job_return(ret=b"\x01\x02"), ["jsonl"]) == {"jsonl": None}
        await returners.aclose()

    asyncio.run(main())
    line = (tmp_path / "cache" / "returns" / "returns.jsonl").read_text()
    assert json.loads(line)["return"] == "0102"


def test_syslog_sends_one_datagram_per_return(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]
    ctx = make_ctx(tmp_path, syslog={"address": f"127.0.0.1:{port}", "facility": "local3",
                                     "level": "notice", "tag": "car"})

    async def main() -> None:
        returners = Returners(ctx, entry_points=False)
        assert isinstance(returners.get("syslog"), SyslogReturner)
        assert await returners.deliver(job_return(ret="x" * 5000), ["syslog"]) == {"syslog": None}
        await returners.aclose()

    try:
        asyncio.run(main())
        datagram = server.recv(65536)
    finally:
        server.close()
    assert datagram.startswith(b"<157>car: {")  # local3 (19) * 8 + notice (5)
    assert len(datagram) == 2048  # cut at max_bytes
    assert b'"fun":"test.ping"' in datagram


def test_syslog_on_a_unix_socket_like_dev_log(tmp_path: Path) -> None:
    path = tmp_path / "log"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    ctx = make_ctx(tmp_path, syslog={"address": str(path)})

    async def main() -> None:
        returners = Returners(ctx, entry_points=False)
        assert await returners.deliver(job_return(), ["syslog"]) == {"syslog": None}
        await returners.aclose()

    try:
        asyncio.run(main())
        datagram = server.recv(65536)
    finally:
        server.close()
    prefix = b"<14>autopi-agent: "  # user (1) * 8 + info (6)
    assert datagram.startswith(prefix)
    record = json.loads(datagram[len(prefix):])
    assert (record["id"], record["jid"], record["return"]) == ("car-0001", job_return().jid, True)


def test_syslog_without_a_local_socket_is_a_no_op(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, syslog={"address": str(tmp_path / "no-log-socket")})
    with capture_logs() as logs:
        returner = Returners(ctx, entry_points=False).get("syslog")
    assert isinstance(returner, NullReturner)
    assert [entry["event"] for entry in logs] == ["returner.syslog_unavailable"]
    assert parse_address("/dev/log") == "/dev/log"
    assert parse_address("[::1]:514") == ("::1", 514)
    with pytest.raises(ReturnerConfigError, match="host:port"):
        parse_address("loghost")


def test_log_returner_writes_a_structured_event(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, log={"max_chars": 20})

    async def main() -> None:
        returners = Returners(ctx, entry_points=False)
        with capture_logs() as logs:
            await returners.deliver(job_return(ret={"speed": 42, "text": "y" * 100}), ["log"])
        event = next(entry for entry in logs if entry["event"] == "job.return")
        assert event["jid"] == job_return().jid and event["fun"] == "test.ping"
        assert event["retcode"] == 0 and event["success"] is True
        assert event["ret"].startswith('{"speed": 42, "text"') and event["ret"].endswith("chars)")

    asyncio.run(main())


def test_master_returner_uses_the_agents_send_return(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    sent: list[JobReturn] = []

    async def send_return(ret: JobReturn) -> str:
        sent.append(ret)
        return "item"

    async def main() -> None:
        offline = Returners(ctx, entry_points=False)
        outcome = await offline.deliver(job_return(), ["master"])
        assert outcome["master"] is not None and "needs a running agent" in outcome["master"]
        ctx.services["send_return"] = send_return
        online = Returners(ctx, entry_points=False)
        assert await online.deliver(job_return(), ["master", "spool"]) == \
            {"master": None, "spool": None}

    asyncio.run(main())
    assert len(sent) == 2


def test_aclose_closes_every_returner(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)

    async def main() -> ListReturner:
        returners = Returners(ctx, TABLE, entry_points=False)
        keep = returners.get("keep")
        assert isinstance(keep, ListReturner)
        await returners.aclose()
        return keep

    assert asyncio.run(main()).closed
