"""Options for the whole suite: --rig runs the hardware tests against a real adapter."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--rig", default=None, metavar="PORT",
                     help="run the rig tests against a real OBD adapter on PORT")
    parser.addoption("--rig-can", default="can0", metavar="CHANNEL",
                     help="the SocketCAN channel of the rig's bus (default can0)")
