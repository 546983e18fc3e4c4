"""Atomic writes and directory creation with exact modes."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from autopi_common.fsutil import create_exclusive, ensure_dir, write_atomic


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_creates_with_mode(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    write_atomic(target, b"secret", 0o400)
    assert target.read_bytes() == b"secret"
    assert mode_of(target) == 0o400


def test_write_atomic_default_mode_is_private(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(target, b"x")
    assert mode_of(target) == 0o600


def test_write_atomic_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_atomic(tmp_path / "f", b"x", 0o600)
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "f") == 0o600


def test_write_atomic_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "data"
    write_atomic(target, b"old", 0o644)
    write_atomic(target, b"new" * 100_000, 0o644)
    assert target.read_bytes() == b"new" * 100_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_write_atomic_replaces_a_read_only_file(tmp_path: Path) -> None:
    target = tmp_path / "ro"
    write_atomic(target, b"one", 0o400)
    write_atomic(target, b"two", 0o400)
    assert target.read_bytes() == b"two"


def test_write_atomic_failure_keeps_old_file_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()  # replacing a directory with a file fails after the temp is written
    (target / "inside").write_text("keep")
    with pytest.raises(OSError):
        write_atomic(target, b"x")
    assert (target / "inside").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_write_atomic_handles_long_names(tmp_path: Path) -> None:
    target = tmp_path / ("n" * 255)
    write_atomic(target, b"ok")
    assert target.read_bytes() == b"ok"


def test_create_exclusive_only_once(tmp_path: Path) -> None:
    target = tmp_path / "once"
    assert create_exclusive(target, b"first", 0o400) is True
    assert create_exclusive(target, b"second", 0o400) is False
    assert target.read_bytes() == b"first"
    assert mode_of(target) == 0o400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["once"]


def test_create_exclusive_race_has_one_winner(tmp_path: Path) -> None:
    target = tmp_path / "race"
    results: list[bool] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        won = create_exclusive(target, f"writer-{n}".encode())
        with lock:
            results.append(won)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert target.read_bytes().startswith(b"writer-")


def test_ensure_dir_creates_parents_with_leaf_mode(tmp_path: Path) -> None:
    leaf = tmp_path / "a" / "b" / "pki"
    assert ensure_dir(leaf, 0o700) == leaf
    assert leaf.is_dir() and mode_of(leaf) == 0o700


def test_ensure_dir_tightens_an_existing_directory(tmp_path: Path) -> None:
    leaf = tmp_path / "pki"
    leaf.mkdir(mode=0o755)
    os.chmod(leaf, 0o777)
    ensure_dir(leaf, 0o700)
    assert mode_of(leaf) == 0o700


def test_ensure_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(OSError):
        ensure_dir(tmp_path / "f", 0o700)
