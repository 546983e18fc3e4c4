"""The master's key store: Salt's layout and Salt's state machine for a presented key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from autopi_common.keypair import KeyFileError
from autopi_proto import rsa
from cloud_master.pki import (
    InvalidMinionId,
    InvalidPublicKey,
    KeyState,
    KeyStore,
    valid_id,
)

ACC, PEND, REJ, DEN = KeyState.ACCEPTED, KeyState.PENDING, KeyState.REJECTED, KeyState.DENIED
DIRS = {ACC: "minions", PEND: "minions_pre", REJ: "minions_rejected", DEN: "minions_denied"}


@pytest.fixture(scope="module")
def pems() -> list[str]:
    """Three distinct minion public keys."""
    return [rsa.public_pem(rsa.generate_private_key()).decode() for _ in range(3)]


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "pki" / "master")


def put(store: KeyStore, state: KeyState, minion_id: str, pem: str) -> None:
    """Place a key as an operator (or salt-key) would have left it."""
    directory = store.pki_dir / DIRS[state]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / minion_id).write_text(pem)


def files(store: KeyStore) -> dict[str, list[str]]:
    return {
        name: sorted(p.name for p in (store.pki_dir / name).iterdir())
        for name in DIRS.values() if (store.pki_dir / name).is_dir()
    }


# -- the state table -------------------------------------------------------------------


def test_unknown_goes_to_pending(store: KeyStore, pems: list[str]) -> None:
    assert store.register("car-1", pems[0]) is PEND
    assert files(store)["minions_pre"] == ["car-1"]
    assert rsa.clean_pem((store.pki_dir / "minions_pre" / "car-1").read_text()) == \
        rsa.clean_pem(pems[0])
    assert stat.S_IMODE((store.pki_dir / "minions_pre").stat().st_mode) == 0o700


def test_unknown_with_auto_accept_is_accepted(store: KeyStore, pems: list[str]) -> None:
    assert store.register("car-1", pems[0], auto_accept=True) is ACC
    assert store.accepted_pub("car-1") is not None
    assert files(store) == {"minions": ["car-1"]}


def test_unknown_with_matching_preseed_is_accepted(store: KeyStore, pems: list[str]) -> None:
    preseed = {"car-1": rsa.fingerprint(pems[0]).upper()}
    assert store.register("car-1", pems[0], preseed=preseed) is ACC
    assert files(store) == {"minions": ["car-1"]}


def test_unknown_with_mismatching_preseed_is_pending(store: KeyStore, pems: list[str]) -> None:
    preseed = {"car-1": rsa.fingerprint(pems[1])}
    assert store.register("car-1", pems[0], preseed=preseed) is PEND
    assert store.accepted_pub("car-1") is None


def test_preseed_for_another_id_does_not_help(store: KeyStore, pems: list[str]) -> None:
    preseed = {"car-2": rsa.fingerprint(pems[0])}
    assert store.register("car-1", pems[0], preseed=preseed) is PEND


def test_pending_same_key_stays_pending(store: KeyStore, pems: list[str]) -> None:
    put(store, PEND, "car-1", pems[0])
    assert store.register("car-1", pems[0] + "\n") is PEND
    assert files(store) == {"minions_pre": ["car-1"]}


def test_pending_same_key_auto_accept_moves(store: KeyStore, pems: list[str]) -> None:
    put(store, PEND, "car-1", pems[0])
    assert store.register("car-1", pems[0], auto_accept=True) is ACC
    assert files(store) == {"minions": ["car-1"], "minions_pre": []}


def test_pending_same_key_preseed_moves(store: KeyStore, pems: list[str]) -> None:
    put(store, PEND, "car-1", pems[0])
    preseed = {"car-1": rsa.fingerprint(pems[0])}
    assert store.register("car-1", pems[0], preseed=preseed) is ACC
    assert store.get("car-1") == (ACC, rsa.clean_pem(pems[0]) + "\n")


@pytest.mark.parametrize("auto_accept", [False, True])
def test_pending_different_key_is_denied(
    store: KeyStore, pems: list[str], auto_accept: bool
) -> None:
    put(store, PEND, "car-1", pems[0])
    assert store.register("car-1", pems[1], auto_accept=auto_accept) is DEN
    assert files(store) == {"minions_pre": ["car-1"], "minions_denied": ["car-1"]}
    assert store.pub("car-1", PEND) == pems[0]  # the pending key is kept
    assert rsa.clean_pem(store.pub("car-1", DEN) or "") == rsa.clean_pem(pems[1])


def test_pending_different_key_matching_preseed_is_still_denied(
    store: KeyStore, pems: list[str]
) -> None:
    put(store, PEND, "car-1", pems[0])
    preseed = {"car-1": rsa.fingerprint(pems[1])}
    assert store.register("car-1", pems[1], preseed=preseed) is DEN


def test_accepted_same_key(store: KeyStore, pems: list[str]) -> None:
    put(store, ACC, "car-1", pems[0])
    assert store.register("car-1", pems[0].replace("\n", "\r\n")) is ACC
    assert files(store) == {"minions": ["car-1"]}


@pytest.mark.parametrize("auto_accept", [False, True])
def test_accepted_different_key_is_denied(
    store: KeyStore, pems: list[str], auto_accept: bool
) -> None:
    put(store, ACC, "car-1", pems[0])
    assert store.register("car-1", pems[1], auto_accept=auto_accept) is DEN
    assert store.accepted_pub("car-1") == pems[0]  # never silently replaced
    assert rsa.clean_pem(store.pub("car-1", DEN) or "") == rsa.clean_pem(pems[1])


@pytest.mark.parametrize("presented", [0, 1])
@pytest.mark.parametrize("auto_accept", [False, True])
def test_rejected_stays_rejected(
    store: KeyStore, pems: list[str], presented: int, auto_accept: bool
) -> None:
    put(store, REJ, "car-1", pems[0])
    preseed = {"car-1": rsa.fingerprint(pems[presented])}
    assert store.register("car-1", pems[presented], auto_accept=auto_accept,
                          preseed=preseed) is REJ
    assert files(store) == {"minions_rejected": ["car-1"]}


def test_denied_only_is_treated_as_new(store: KeyStore, pems: list[str]) -> None:
    put(store, DEN, "car-1", pems[1])
    assert store.register("car-1", pems[0]) is PEND
    assert store.list()[PEND] == ["car-1"] and store.list()[DEN] == ["car-1"]


def test_stricter_state_wins_after_an_interrupted_move(
    store: KeyStore, pems: list[str]
) -> None:
    put(store, ACC, "car-1", pems[0])
    put(store, REJ, "car-1", pems[0])
    assert store.register("car-1", pems[0]) is REJ
    assert store.accepted_pub("car-1") is None
    listing = store.list()
    assert listing[REJ] == ["car-1"] and listing[ACC] == []


def test_invalid_public_key_is_refused(store: KeyStore) -> None:
    with pytest.raises(InvalidPublicKey):
        store.register("car-1", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")
    assert files(store) == {}


# -- ids that try to escape ------------------------------------------------------------


BAD_IDS = ["", ".", "..", "../minions/evil", "a/b", "/etc/passwd", "a\\b", "a\0b", "..evil",
           "x..y", ".hidden", "line\nbreak", "esc\x1b[2J", "é" * 200]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_ids_are_refused(store: KeyStore, pems: list[str], bad: str) -> None:
    assert not valid_id(bad)
    with pytest.raises(InvalidMinionId):
        store.register(bad, pems[0], auto_accept=True)
    assert store.accepted_pub(bad) is None
    assert not store.pki_dir.exists()


def test_escape_attempt_writes_nothing_anywhere(tmp_path: Path, pems: list[str]) -> None:
    store = KeyStore(tmp_path / "pki")
    for bad in BAD_IDS:
        with pytest.raises(InvalidMinionId):
            store.register(bad, pems[0], auto_accept=True)
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize("good", ["car-0001", "a.b.example.com", "VIN_WBA123", "x" * 255,
                                  "ünïcode"])
def test_good_ids(good: str) -> None:
    assert valid_id(good)


def test_non_string_ids_are_invalid() -> None:
    assert not valid_id(None)
    assert not valid_id(b"car")
    assert not valid_id(7)


def test_symlinked_key_is_not_followed(store: KeyStore, tmp_path: Path, pems: list[str]) -> None:
    outside = tmp_path / "outside.pub"
    outside.write_text(pems[0])
    (store.pki_dir / "minions").mkdir(parents=True)
    (store.pki_dir / "minions" / "car-1").symlink_to(outside)
    assert store.accepted_pub("car-1") is None
    assert store.list()[ACC] == []
    assert store.register("car-1", pems[0]) is PEND


# -- salt-key operations ---------------------------------------------------------------


@pytest.fixture
def populated(store: KeyStore, pems: list[str]) -> KeyStore:
    put(store, ACC, "car-1", pems[0])
    put(store, ACC, "Bus-7", pems[1])
    put(store, PEND, "car-2", pems[1])
    put(store, PEND, "truck-1", pems[2])
    put(store, REJ, "car-3", pems[2])
    put(store, DEN, "car-1", pems[2])
    (store.pki_dir / "minions_pre" / ".tmp-0123").write_text("partial")  # a crashed write
    return store


def test_list(populated: KeyStore) -> None:
    assert populated.list() == {
        ACC: ["Bus-7", "car-1"], PEND: ["car-2", "truck-1"], REJ: ["car-3"], DEN: ["car-1"],
    }


def test_list_of_an_empty_store(store: KeyStore) -> None:
    assert store.list() == {ACC: [], PEND: [], REJ: [], DEN: []}
    assert not store.pki_dir.exists()  # reading creates nothing


def test_match_globs_and_lists(populated: KeyStore) -> None:
    assert populated.match("car-*") == {ACC: ["car-1"], PEND: ["car-2"], REJ: ["car-3"],
                                        DEN: ["car-1"]}
    assert populated.match("truck-1,Bus-7") == {ACC: ["Bus-7"], PEND: ["truck-1"]}
    assert populated.match("nothing*") == {}


def test_accept_moves_pending_only(populated: KeyStore) -> None:
    assert populated.accept("*") == {PEND: ["car-2", "truck-1"]}
    listing = populated.list()
    assert listing[ACC] == ["Bus-7", "car-1", "car-2", "truck-1"]
    assert listing[PEND] == [] and listing[REJ] == ["car-3"]


def test_accept_including_rejected(populated: KeyStore) -> None:
    assert populated.accept("car-3", include_rejected=True) == {REJ: ["car-3"]}
    assert populated.accepted_pub("car-3") is not None
    assert populated.list()[REJ] == []


def test_accept_does_not_touch_rejected_by_default(populated: KeyStore) -> None:
    assert populated.accept("car-3") == {}
    assert populated.accepted_pub("car-3") is None


def test_reject_pending_and_optionally_accepted(populated: KeyStore) -> None:
    assert populated.reject("car-*") == {PEND: ["car-2"]}
    assert populated.accepted_pub("car-1") is not None
    assert populated.reject("car-1", include_accepted=True) == {ACC: ["car-1"]}
    assert populated.accepted_pub("car-1") is None
    assert populated.list()[REJ] == ["car-1", "car-2", "car-3"]


def test_rejected_minion_stays_out(populated: KeyStore, pems: list[str]) -> None:
    populated.reject("car-1", include_accepted=True)
    assert populated.register("car-1", pems[0], auto_accept=True) is REJ


def test_delete_removes_every_state(populated: KeyStore) -> None:
    assert populated.delete("car-1") == {ACC: ["car-1"], DEN: ["car-1"]}
    assert populated.delete("car-1") == {}
    assert populated.match("car-1") == {}


def test_delete_then_register_starts_over(populated: KeyStore, pems: list[str]) -> None:
    populated.delete("car-3")
    assert populated.register("car-3", pems[0]) is PEND


def test_finger(populated: KeyStore, pems: list[str]) -> None:
    fingers = populated.finger("car-1")
    assert fingers == {ACC: {"car-1": rsa.fingerprint(pems[0])},
                       DEN: {"car-1": rsa.fingerprint(pems[2])}}
    assert populated.finger("car-2", "sha1") == {PEND: {"car-2": rsa.fingerprint(pems[1],
                                                                                  "sha1")}}


def test_writes_leave_no_temp_files(store: KeyStore, pems: list[str]) -> None:
    store.register("car-1", pems[0])
    store.accept("car-1")
    store.register("car-1", pems[1])
    leftovers = [p for p in store.pki_dir.rglob(".*")]
    assert leftovers == []


# -- the master key pair ---------------------------------------------------------------


def test_master_keys_created_once(store: KeyStore) -> None:
    first = store.master_keys()
    assert stat.S_IMODE((store.pki_dir / "master.pem").stat().st_mode) == 0o400
    assert stat.S_IMODE((store.pki_dir / "master.pub").stat().st_mode) == 0o644
    assert stat.S_IMODE(store.pki_dir.stat().st_mode) == 0o700
    assert (store.pki_dir / "master.pub").read_text() == first.public_pem
    again = KeyStore(store.pki_dir).master_keys()
    assert again.public_pem == first.public_pem
    assert again.fingerprint() == rsa.fingerprint(first.public_pem)
    assert store.master_keys() is first


def test_master_private_key_with_loose_mode_is_refused(store: KeyStore) -> None:
    store.master_keys()
    os.chmod(store.pki_dir / "master.pem", 0o604)
    with pytest.raises(KeyFileError, match="accessible by group or others"):
        KeyStore(store.pki_dir).master_keys()
