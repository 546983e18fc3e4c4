"""Where the real Salt peer lives, for interoperability tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def salt_venv() -> Path:
    """The Salt peer venv; skip (locally) or fail (in CI) when it is missing."""
    venv = Path(os.environ.get("AUTOPI_SALT_VENV", REPO / ".cache" / "salt-venv"))
    if not (venv / "bin" / "salt-master").exists():
        message = f"real Salt peer not installed at {venv} (run `make salt-peer`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return venv
