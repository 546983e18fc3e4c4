"""The master's mine: latest value per (minion, function), targeting, accepted minions only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopi_proto.messages import OpenedRequest
from cloud_master.mine import ACL_DATA, ACL_ID, MineService, MineStore
from cloud_master.pki import KeyStore

GRAINS: dict[str, dict[str, Any]] = {
    "car-0001": {"os": "Debian", "model": "golf"},
    "car-0002": {"os": "Debian", "model": "polo"},
    "bench-1": {"os": "Ubuntu"},
    "pending-1": {"os": "Debian"},
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MineStore]:
    made = MineStore(tmp_path / "mine.sqlite")
    yield made
    made.close()


@pytest.fixture
def service(tmp_path: Path, store: MineStore) -> MineService:
    keys = KeyStore(tmp_path / "pki")
    for state, ids in (("minions", ["car-0001", "car-0002", "bench-1"]),
                       ("minions_pre", ["pending-1"])):
        folder = tmp_path / "pki" / state
        folder.mkdir(parents=True, exist_ok=True)
        for minion in ids:
            (folder / minion).write_text("not parsed by list()")
    return MineService(store, keys, lambda minion: GRAINS.get(minion, {}))


def request(minion: str, **load: Any) -> OpenedRequest:
    return OpenedRequest(minion_id=minion, load={"id": minion, **load}, nonce=None,
                         enc_algo="OAEP-SHA224", sig_algo="PKCS1v15-SHA224")


def call(service: MineService, minion: str, cmd: str, **load: Any) -> Any:
    async def send() -> Any:
        return await service.handlers()[cmd](request(minion, cmd=cmd, **load))

    return asyncio.run(send())


def test_store_keeps_only_the_latest_value(store: MineStore, tmp_path: Path) -> None:
    store.update("car-0001", {"vin": "WVW1", "ip": ["10.0.0.1"]})
    store.update("car-0001", {"vin": "WVW2"})
    assert store.fetch(["car-0001"], ["vin", "ip"]) == {
        "car-0001": {"vin": "WVW2", "ip": ["10.0.0.1"]}}
    store.update("car-0001", {"speed": 3}, clear=True)
    assert store.fetch(["car-0001"], ["vin", "ip", "speed"]) == {"car-0001": {"speed": 3}}
    rows = store._db.execute("SELECT COUNT(*) FROM mine").fetchone()[0]
    assert rows == 1
    store.close()
    reopened = MineStore(tmp_path / "mine.sqlite")
    assert reopened.fetch(["car-0001"], ["speed"]) == {"car-0001": {"speed": 3}}
    assert reopened.delete("car-0001", "speed")
    assert not reopened.delete("car-0001", "speed")
    reopened.close()


def test_values_keep_their_types(store: MineStore) -> None:
    value = {"raw": b"\x00\xff", "n": 1.5, "nested": [1, {"a": None}], 3: "int key"}
    store.update("car-0001", {"odd": value})
    assert store.fetch(["car-0001"], ["odd"])["car-0001"]["odd"] == value


def test_update_and_get_through_handlers(service: MineService) -> None:
    assert call(service, "car-0001", "_mine", data={"vin": "WVW1"}, clear=False) is True
    assert call(service, "car-0002", "_mine", data={"vin": "WVW2"}) is True
    assert call(service, "car-0002", "_mine", data={"vin": "WVW3"}) is True
    got = call(service, "bench-1", "_mine_get", tgt="car-*", fun="vin", tgt_type="glob")
    assert got == {"car-0001": "WVW1", "car-0002": "WVW3"}


@pytest.mark.parametrize("tgt, tgt_type, expected", [
    ("car-0001", "glob", ["car-0001"]),
    (["car-0002", "bench-1"], "list", ["bench-1", "car-0002"]),
    ("model:golf", "grain", ["car-0001"]),
    ("G@os:Debian and not car-0002", "compound", ["car-0001"]),
    (r"car-000[12]", "pcre", ["car-0001", "car-0002"]),
    ("*", "glob", ["bench-1", "car-0001", "car-0002"]),
])
def test_targeting(service: MineService, tgt: Any, tgt_type: str,
                   expected: list[str]) -> None:
    for minion in ("car-0001", "car-0002", "bench-1"):
        call(service, minion, "_mine", data={"id": minion})
    assert sorted(service.get(tgt, "id", tgt_type)) == expected


def test_only_accepted_minions_are_answered(service: MineService, store: MineStore) -> None:
    store.update("pending-1", {"vin": "NOPE"})
    store.update("gone-1", {"vin": "OLD"})
    call(service, "car-0001", "_mine", data={"vin": "WVW1"})
    assert service.get("*", "vin") == {"car-0001": "WVW1"}


def test_several_functions_are_keyed_by_function(service: MineService) -> None:
    call(service, "car-0001", "_mine", data={"vin": "WVW1", "ip": "10.0.0.1"})
    assert service.get("*", "vin,ip") == {"vin": {"car-0001": "WVW1"},
                                           "ip": {"car-0001": "10.0.0.1"}}
    assert service.get("*", ["vin"]) == {"vin": {"car-0001": "WVW1"}}


def test_delete_and_flush_touch_only_the_sender(service: MineService) -> None:
    call(service, "car-0001", "_mine", data={"vin": "A", "ip": "x"})
    call(service, "car-0002", "_mine", data={"vin": "B"})
    assert call(service, "car-0002", "_mine_delete", fun="vin") is True
    assert service.get("*", "vin") == {"car-0001": "A"}
    assert call(service, "car-0001", "_mine_flush") is True
    assert service.get("*", "vin,ip") == {}


def test_minion_side_acl(service: MineService) -> None:
    wrapped = {ACL_DATA: "secret", ACL_ID: 1, "allow_tgt": "car-0002"}
    call(service, "car-0001", "_mine", data={"key": wrapped})
    assert call(service, "car-0002", "_mine_get", tgt="*", fun="key") == {"car-0001": "secret"}
    assert call(service, "bench-1", "_mine_get", tgt="*", fun="key") == {}
    assert service.get("*", "key") == {"car-0001": "secret"}


@pytest.mark.parametrize("load, expected", [
    ({"cmd": "_mine", "data": "not a map"}, False),
    ({"cmd": "_mine"}, False),
    ({"cmd": "_mine_get", "fun": "vin"}, {}),
    ({"cmd": "_mine_get", "tgt": "*", "fun": 3}, {}),
    ({"cmd": "_mine_get", "tgt": "*", "fun": "vin", "tgt_type": "nonsense"}, {}),
    ({"cmd": "_mine_delete"}, False),
])
def test_bad_loads_get_salts_answers(service: MineService, load: dict[str, Any],
                                     expected: Any) -> None:
    call(service, "car-0001", "_mine", data={"vin": "A"})
    assert call(service, "car-0001", **load) == expected
    assert service.get("*", "vin") == {"car-0001": "A"}
