"""Fixtures for the OBD tests: a simulated car (or the bench rig), connection owners that
always close, a dispatcher that binds arguments as on the wire, and thread-leak checks.

The rig: ``pytest tests/obd --rig /dev/ttyUSB0 [--rig-can can0]`` runs the tests marked
``rig`` against a real adapter whose OBD pins reach a CAN channel where this process runs
the simulated ECUs (``hil`` on socketcan). Without ``--rig`` those tests are skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from autopi_agent.obd import ObdOwner, ObdSettings
from tests.obd.helpers import threads_settle


def pytest_addoption(parser: pytest.Parser) -> None:
    # Honoured when tests/obd is on the command line; tests/conftest.py should carry the
    # same lines so that a plain `pytest --rig ...` knows the option too.
    try:
        parser.addoption("--rig", default=None, metavar="PORT",
                         help="run the rig tests against the real adapter at PORT")
        parser.addoption("--rig-can", default="can0", metavar="CHANNEL",
                         help="socketcan channel of the rig's CAN bus (default can0)")
    except ValueError:
        pass  # already added by tests/conftest.py


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--rig", default=None):
        return
    skip = pytest.mark.skip(reason="needs a real adapter and CAN channel (--rig PORT)")
    for item in items:
        if "rig" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="module")
def no_threads_left_by_the_module() -> Iterator[None]:
    """Fail the module's last test if its module-wide cars or owners leave threads."""
    before = set(threading.enumerate())
    yield
    extra = threads_settle(before)
    assert not extra, f"threads left running: {extra}"


@pytest.fixture(autouse=True)
def no_threads_left_by_the_test() -> Iterator[None]:
    """Fail a test that leaves threads behind (module-wide fixtures started earlier)."""
    before = set(threading.enumerate())
    yield
    extra = threads_settle(before)
    assert not extra, f"threads left running: {extra}"


@pytest.fixture
def make_owner() -> Iterator[Callable[[ObdSettings], ObdOwner]]:
    """Start owners that are closed after the test."""
    owners: list[ObdOwner] = []

    def start(settings: ObdSettings) -> ObdOwner:
        owner = ObdOwner(settings).start()
        owners.append(owner)
        return owner

    yield start
    for owner in owners:
        owner.close()
