"""The architecture, enforced: which package may import which (see docs/PLAN.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OURS = {"autopi_proto", "autopi_common", "autopi_agent", "cloud_master", "hil"}
ALLOWED = {
    "autopi_proto": set(),
    "autopi_common": {"autopi_proto"},
    "autopi_agent": {"autopi_proto", "autopi_common"},
    "cloud_master": {"autopi_proto", "autopi_common"},
    "hil": set(),
}
# The pure protocol package does no I/O: only the stdlib's pure parts and its two libraries.
PROTO_THIRD_PARTY = {"msgpack", "cryptography", "yaml"}
PROTO_FORBIDDEN_STDLIB = {"socket", "os", "subprocess", "sqlite3", "asyncio", "threading.Thread"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    bad = []
    for path in files(package):
        for name in imports(path):
            top = name.split(".")[0]
            if top in OURS and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_protocol_package_is_pure() -> None:
    bad = []
    for path in files("autopi_proto"):
        for name in imports(path):
            top = name.split(".")[0]
            if top in PROTO_FORBIDDEN_STDLIB or name in PROTO_FORBIDDEN_STDLIB:
                bad.append(f"{path.relative_to(REPO)} imports {name} (I/O)")
            elif top not in sys.stdlib_module_names and top not in PROTO_THIRD_PARTY | {"autopi_proto"}:
                bad.append(f"{path.relative_to(REPO)} imports third-party {name}")
    assert not bad, "\n".join(bad)
