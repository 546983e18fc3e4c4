"""The agent's key pair and the master key it trusts (pinned or on first use)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import structlog.testing

from autopi_agent.keys import (
    KeyFileError,
    MasterKeyCache,
    MasterKeyMismatch,
    MinionKeys,
    finger_hash,
)
from autopi_proto import rsa


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def master_pems() -> tuple[str, str]:
    """Two distinct master public keys."""
    return (rsa.public_pem(rsa.generate_private_key()).decode(),
            rsa.public_pem(rsa.generate_private_key()).decode())


def test_first_start_creates_the_pair(tmp_path: Path) -> None:
    pki = tmp_path / "pki" / "minion"
    keys = MinionKeys.load_or_create(pki, 2048)
    assert mode_of(pki) == 0o700
    assert mode_of(pki / "minion.pem") == 0o400
    assert mode_of(pki / "minion.pub") == 0o644
    assert (pki / "minion.pub").read_text() == keys.public_pem
    assert keys.private_key.key_size == 2048
    assert rsa.load_public(keys.public_pem).public_numbers() == \
        keys.private_key.public_key().public_numbers()


def test_restart_loads_the_same_pair(tmp_path: Path) -> None:
    first = MinionKeys.load_or_create(tmp_path, 2048)
    second = MinionKeys.load_or_create(tmp_path, 2048)
    assert first.public_pem == second.public_pem
    assert first.fingerprint() == second.fingerprint()


def test_missing_public_key_is_rewritten(tmp_path: Path) -> None:
    first = MinionKeys.load_or_create(tmp_path, 2048)
    (tmp_path / "minion.pub").unlink()
    second = MinionKeys.load_or_create(tmp_path, 2048)
    assert (tmp_path / "minion.pub").read_text() == first.public_pem == second.public_pem
    assert mode_of(tmp_path / "minion.pub") == 0o644


def test_world_readable_private_key_is_refused(tmp_path: Path) -> None:
    MinionKeys.load_or_create(tmp_path, 2048)
    os.chmod(tmp_path / "minion.pem", 0o644)
    with pytest.raises(KeyFileError, match="minion.pem.*group or others"):
        MinionKeys.load_or_create(tmp_path, 2048)


def test_corrupt_private_key_is_refused_not_replaced(tmp_path: Path) -> None:
    pem = tmp_path / "minion.pem"
    fd = os.open(pem, os.O_WRONLY | os.O_CREAT, 0o400)
    os.write(fd, b"-----BEGIN RSA PRIVATE KEY-----\ngarbage\n-----END RSA PRIVATE KEY-----\n")
    os.close(fd)
    with pytest.raises(KeyFileError, match="cannot use the private key"):
        MinionKeys.load_or_create(tmp_path, 2048)
    assert b"garbage" in pem.read_bytes()


def test_tofu_caches_and_warns(tmp_path: Path, master_pems: tuple[str, str]) -> None:
    cache = MasterKeyCache(tmp_path, "")
    assert cache.cached() is None
    with structlog.testing.capture_logs() as logs:
        cache.check(master_pems[0])
    assert rsa.clean_pem(cache.cached() or "") == rsa.clean_pem(master_pems[0])
    assert mode_of(tmp_path / "minion_master.pub") == 0o644
    warning = [e for e in logs if e["event"] == "master_key.trusted_on_first_use"]
    assert warning and warning[0]["log_level"] == "warning"
    assert warning[0]["finger"] == rsa.fingerprint(master_pems[0])


def test_same_key_passes_again(tmp_path: Path, master_pems: tuple[str, str]) -> None:
    cache = MasterKeyCache(tmp_path, "")
    cache.check(master_pems[0])
    cache.check(master_pems[0].replace("\n", "\r\n") + "\n\n")  # same key, other line ends


def test_changed_key_is_never_silently_replaced(
    tmp_path: Path, master_pems: tuple[str, str]
) -> None:
    MasterKeyCache(tmp_path, "").check(master_pems[0])
    with pytest.raises(MasterKeyMismatch, match="differs from the one cached"):
        MasterKeyCache(tmp_path, "").check(master_pems[1])
    cached = (tmp_path / "minion_master.pub").read_text()
    assert rsa.clean_pem(cached) == rsa.clean_pem(master_pems[0])


def test_pinned_finger_matches(tmp_path: Path, master_pems: tuple[str, str]) -> None:
    finger = rsa.fingerprint(master_pems[0]).upper()  # compared case-insensitively
    MasterKeyCache(tmp_path, finger).check(master_pems[0])
    assert (tmp_path / "minion_master.pub").exists()


def test_pinned_finger_mismatch_is_refused(
    tmp_path: Path, master_pems: tuple[str, str]
) -> None:
    cache = MasterKeyCache(tmp_path, rsa.fingerprint(master_pems[0]))
    with pytest.raises(MasterKeyMismatch, match="does not match master_finger"):
        cache.check(master_pems[1])
    assert cache.cached() is None


def test_pinned_sha1_finger(tmp_path: Path, master_pems: tuple[str, str]) -> None:
    finger = rsa.fingerprint(master_pems[0], "sha1")
    assert finger_hash(finger) == "sha1"
    MasterKeyCache(tmp_path, finger).check(master_pems[0])
    with pytest.raises(MasterKeyMismatch):
        MasterKeyCache(tmp_path / "other", finger).check(master_pems[1])


def test_pin_wins_over_an_unpinned_cache(tmp_path: Path, master_pems: tuple[str, str]) -> None:
    MasterKeyCache(tmp_path, "").check(master_pems[1])
    with pytest.raises(MasterKeyMismatch, match="master_finger"):
        MasterKeyCache(tmp_path, rsa.fingerprint(master_pems[0])).check(master_pems[1])


def test_unusable_master_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyMismatch, match="unusable"):
        MasterKeyCache(tmp_path, "").check("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
    assert not (tmp_path / "minion_master.pub").exists()


def test_malformed_pin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hash lengths"):
        MasterKeyCache(tmp_path, "ab:cd:ef")
