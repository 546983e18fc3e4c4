"""A cached pool of agent key pairs, and pre-accepting them on a master by writing files.

RSA-2048 generation costs tens of milliseconds a key, so the pool is made once (in
parallel) under ``.cache/bench-keys`` and reused by later runs. Fleets larger than the
pool reuse its keys under other ids: every agent still does its own RSA work (token
signature, _auth decryption, publish verification), which is what the benchmark measures.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY_CACHE = REPO / ".cache" / "bench-keys"
DEFAULT_POOL = 1000
PRIVATE_NAME, PUBLIC_NAME = "minion.pem", "minion.pub"


def _make(path: str) -> None:
    from autopi_agent.keys import MinionKeys
    from autopi_common.logging import setup_logging

    setup_logging("warning")

    MinionKeys.load_or_create(path, 2048)


def ensure_pool(size: int = DEFAULT_POOL, cache: Path = KEY_CACHE) -> list[Path]:
    """Directories holding minion.pem/minion.pub, ``size`` of them, made where missing."""
    dirs = [cache / f"{index:05d}" for index in range(size)]
    missing = [str(d) for d in dirs if not (d / PUBLIC_NAME).is_file()]
    if missing:
        cache.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor() as pool:
            list(pool.map(_make, missing, chunksize=16))
    return dirs


def install_agent_keys(key_dir: Path, pki_dir: Path) -> str:
    """Copy a pooled pair into an agent's pki dir (modes kept); return the public PEM."""
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in (PRIVATE_NAME, PUBLIC_NAME):
        target = pki_dir / name
        if not target.exists():
            shutil.copy2(key_dir / name, target)
    return (key_dir / PUBLIC_NAME).read_text()


def preaccept(master_pki_dir: Path, minion_id: str, public_pem: str) -> None:
    """Accept a minion's key on a master (ours or Salt's) the way `key accept` leaves it."""
    accepted = master_pki_dir / "minions"
    accepted.mkdir(parents=True, exist_ok=True, mode=0o700)
    (accepted / minion_id).write_text(public_pem)
