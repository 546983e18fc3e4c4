"""Host tools the image tests need: skip where one is missing, except in CI, which installs them."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_tool(command: str, package: str) -> str:
    """The tool's path; a missing one skips the test locally and fails it in CI."""
    path = shutil.which(command)
    if path is None:
        message = f"{command} is not installed (apt-get install {package})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path
