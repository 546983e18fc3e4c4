"""Fixtures that run real Salt 3008 peers; every test here carries the `salt` marker."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from . import saltpeer

INTEROP_DIR = Path(__file__).resolve().parent

MinionFactory = saltpeer.MinionFactory
MasterFactory = saltpeer.MasterFactory


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/interop with `salt`."""
    for item in items:
        if INTEROP_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.salt)


@pytest.fixture(scope="session")
def salt_venv() -> saltpeer.SaltVenv:
    """The Salt 3008 venv; skips outside CI when absent, errors in CI."""
    try:
        return saltpeer.find_salt_venv()
    except saltpeer.SaltPeerUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture
def salt_root() -> Iterator[Callable[[str], Path]]:
    """Make short per-daemon root dirs (Salt's socket paths must stay short)."""
    with tempfile.TemporaryDirectory(prefix="sp-", ignore_cleanup_errors=True) as base:
        def make(name: str) -> Path:
            path = Path(base) / name
            path.mkdir()
            return path

        yield make


@pytest.fixture
def salt_master_factory(
    salt_venv: saltpeer.SaltVenv, salt_root: Callable[[str], Path]
) -> Iterator[MasterFactory]:
    """Start stock salt-masters with extra config, e.g. factory(auto_accept=True)."""
    masters: list[saltpeer.SaltMaster] = []

    def factory(
        *, auto_accept: bool = False, extra: Mapping[str, Any] | None = None
    ) -> saltpeer.SaltMaster:
        root = salt_root(f"master-{len(masters)}")
        master = saltpeer.SaltMaster.create(salt_venv, root, auto_accept=auto_accept, extra=extra)
        masters.append(master)
        master.start()
        master.wait_ready()
        return master

    try:
        yield factory
    finally:
        for master in masters:
            master.stop()


@pytest.fixture
def salt_master(salt_master_factory: MasterFactory) -> saltpeer.SaltMaster:
    """A running stock salt-master (auto_accept off) on free 127.0.0.1 ports."""
    return salt_master_factory()


@pytest.fixture
def salt_minion_factory(
    salt_venv: saltpeer.SaltVenv, salt_root: Callable[[str], Path]
) -> Iterator[MinionFactory]:
    """Create (and by default start) stock salt-minions; all are stopped at teardown.

    Call as factory(minion_id, master=salt_master) or with master_port= and
    publish_port= to point the minion at another master (ours). preaccept=True
    (needs master=) installs the minion's key on the Salt master before start.
    """
    minions: list[saltpeer.SaltMinion] = []

    def factory(
        minion_id: str, *, master: saltpeer.SaltMaster | None = None,
        master_port: int | None = None, publish_port: int | None = None,
        extra: Mapping[str, Any] | None = None, start: bool = True, preaccept: bool = False,
    ) -> saltpeer.SaltMinion:
        if master is not None:
            master_port, publish_port = master.ret_port, master.publish_port
        if master_port is None or publish_port is None:
            raise saltpeer.SaltPeerError("give master= or both master_port= and publish_port=")
        minion = saltpeer.SaltMinion.create(
            salt_venv, salt_root(f"minion-{len(minions)}"), minion_id=minion_id,
            master_port=master_port, publish_port=publish_port, extra=extra,
        )
        minions.append(minion)
        if preaccept:
            if master is None:
                raise saltpeer.SaltPeerError("preaccept=True needs master=")
            master.preaccept(minion)
        if start:
            minion.start()
        return minion

    try:
        yield factory
    finally:
        for minion in minions:
            minion.stop()
