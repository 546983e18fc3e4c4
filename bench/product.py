"""The agent as a dongle runs it: a venv with the runtime dependencies only.

The development venv also holds the test and plot extras (matplotlib brings numpy, and pint,
which python-OBD uses, imports numpy whenever it is installed: about 10 MiB more in an agent
with OBD). The image installs the wheel without extras (image/pi-gen-stage), so the agent's
figures are measured from such a venv, built once in ``.cache/product-venv`` and refreshed
with the working tree's code at every run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.proc import REPO, BenchError

VENV = REPO / ".cache" / "product-venv"


def _pip(venv: Path, *args: str) -> None:
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", *args], cwd=REPO, timeout=900,
                          capture_output=True, text=True)
    if done.returncode:
        raise BenchError(f"pip install {' '.join(args)} failed: {done.stderr.strip()[-300:]}")


def ensure(venv: Path = VENV) -> Path:
    """The product venv's bin directory, created or refreshed; BenchError if pip fails."""
    fresh = not (venv / "bin" / "python").exists()
    if fresh:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       timeout=300)
        _pip(venv, str(REPO))
    else:
        _pip(venv, "--no-deps", "--force-reinstall", str(REPO))
    return venv / "bin"


def has_module(bin_dir: Path, name: str) -> bool:
    """Whether ``name`` can be imported in that venv (numpy, for the note)."""
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({name!r}) else 1)"
    return subprocess.run([str(bin_dir / "python"), "-c", code], timeout=60).returncode == 0


if __name__ == "__main__":
    print(ensure())
