"""Key pairs on disk: created once with safe modes, refused when unsafe or corrupt."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from autopi_common.keypair import KeyFileError, load_or_create_keypair
from autopi_proto import rsa


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_created_then_reloaded(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    first = load_or_create_keypair(pki / "k.pem", pki / "k.pub", 2048)
    assert mode_of(pki) == 0o700
    assert mode_of(pki / "k.pem") == 0o400
    assert mode_of(pki / "k.pub") == 0o644
    assert (pki / "k.pem").read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert first.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    second = load_or_create_keypair(pki / "k.pem", pki / "k.pub", 2048)
    assert second.public_pem == first.public_pem
    assert second.fingerprint() == rsa.fingerprint(first.public_pem)


def test_stale_public_file_is_rewritten(tmp_path: Path) -> None:
    pair = load_or_create_keypair(tmp_path / "k.pem", tmp_path / "k.pub", 2048)
    other = rsa.public_pem(rsa.generate_private_key(2048))
    (tmp_path / "k.pub").write_bytes(other)
    again = load_or_create_keypair(tmp_path / "k.pem", tmp_path / "k.pub", 2048)
    assert (tmp_path / "k.pub").read_text() == pair.public_pem == again.public_pem


def test_refuses_group_readable_private_key(tmp_path: Path) -> None:
    load_or_create_keypair(tmp_path / "k.pem", tmp_path / "k.pub", 2048)
    os.chmod(tmp_path / "k.pem", 0o440)
    with pytest.raises(KeyFileError, match=r"k\.pem: private key is accessible.*chmod 400"):
        load_or_create_keypair(tmp_path / "k.pem", tmp_path / "k.pub", 2048)


def test_refuses_a_symlinked_private_key(tmp_path: Path) -> None:
    real = load_or_create_keypair(tmp_path / "real.pem", tmp_path / "real.pub", 2048)
    assert real.private_path.exists()
    pki = tmp_path / "pki"
    pki.mkdir(mode=0o700)
    (pki / "k.pem").symlink_to(tmp_path / "real.pem")
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_or_create_keypair(pki / "k.pem", pki / "k.pub", 2048)
