"""PostgreSQL for tests and benchmarks: a given server, or a private throwaway cluster.

Order of choice (:func:`postgres_server`): ``AUTOPI_TEST_POSTGRES_DSN`` if set; else a
private cluster started with ``initdb`` + ``pg_ctl`` on a Unix socket in a temp directory
(no TCP port, no system state touched; as the ``postgres`` user when run as root); else a
server answering on the local default socket. With none of them a test is skipped, except
under CI (``CI=true``), where it fails: CI always has PostgreSQL.

Every test works in its own schema (:func:`fresh_schema`), so a shared server stays clean.
"""

from __future__ import annotations

import os
import pwd
import random
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

__all__ = ["PgCluster", "PgServer", "as_url", "find_bindir", "fresh_schema", "postgres_server",
           "private_cluster", "require_psycopg", "unavailable"]

DSN_ENV = "AUTOPI_TEST_POSTGRES_DSN"


def unavailable(why: str) -> Any:
    """Skip, or fail under CI, where PostgreSQL must be present."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"PostgreSQL is required under CI: {why}")
    pytest.skip(why, allow_module_level=True)


def require_psycopg() -> None:
    """psycopg 3 is importable (the ``postgres`` extra), or skip / fail under CI."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed: pip install -e '.[postgres]'")


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl (Debian keeps them off PATH), newest version."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                        else 0, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve())
    for initdb in candidates:
        if (initdb.parent / "pg_ctl").exists():
            return initdb.parent
    return None


def _owner() -> tuple[str | None, int, int]:
    """Who runs the server: ourselves, or the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return None, os.getuid(), os.getgid()
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        unavailable("running as root and there is no 'postgres' user to run initdb as")
        raise
    return "postgres", entry.pw_uid, entry.pw_gid


@dataclass
class PgCluster:
    """A throwaway cluster: data and socket in one temp directory, removed on :meth:`stop`."""

    bindir: Path
    root: Path
    port: int
    user: str | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"host={self.root} port={self.port} user=postgres dbname=postgres"

    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        result = subprocess.run(argv, user=self.user, capture_output=True, text=True,
                                timeout=timeout, check=False, cwd=self.root)
        if result.returncode != 0:
            log = (self.root / "server.log")
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr}{result.stdout}\n{tail}")

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args)

    def start(self) -> None:
        """Create the cluster and start it."""
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        self.resume()

    def resume(self) -> None:
        """Start the server (again) on the private socket."""
        options = f"-k {self.root} -p {self.port} -c listen_addresses=''"
        self._pg_ctl("-l", str(self.root / "server.log"), "-o", options, "start")

    def halt(self) -> None:
        """Stop the server (fast: sessions are cut), keeping its data."""
        self._pg_ctl("-m", "fast", "stop")

    def restart(self) -> None:
        """Stop and start again, as an operator or a crash-restart would."""
        self._pg_ctl("-l", str(self.root / "server.log"), "-m", "fast", "restart")

    def stop(self) -> None:
        """Stop the server if it runs and remove everything."""
        try:
            if (self.data / "postmaster.pid").exists():
                self.halt()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_cluster(enabled: bool = True) -> Iterator[PgCluster | None]:
    """A started private cluster (None when not enabled); skips/fails if PostgreSQL is absent."""
    if not enabled:
        yield None
        return
    bindir = find_bindir()
    if bindir is None:
        unavailable("no initdb found (apt-get install postgresql)")
        raise AssertionError("unreachable")
    user, uid, gid = _owner()
    # A short path: a Unix socket path must stay under ~107 bytes.
    root = Path(tempfile.mkdtemp(prefix="autopi-pg-", dir="/tmp"))
    os.chown(root, uid, gid)
    cluster = PgCluster(bindir, root, random.randint(20000, 60000), user)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@dataclass(frozen=True)
class PgServer:
    """A server to test against; ``cluster`` is set when we own it (and may restart it)."""

    dsn: str
    cluster: PgCluster | None


def _default_server_answers() -> bool:
    import psycopg

    try:
        psycopg.connect("", connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


@contextmanager
def postgres_server() -> Iterator[PgServer]:
    """The server for a test module, by the order in this module's docstring."""
    require_psycopg()
    if os.environ.get(DSN_ENV):
        yield PgServer(os.environ[DSN_ENV], None)
        return
    if find_bindir() is not None:
        with private_cluster() as cluster:
            assert cluster is not None
            yield PgServer(cluster.dsn, cluster)
        return
    if _default_server_answers():
        yield PgServer("", None)
        return
    unavailable(f"no PostgreSQL: set {DSN_ENV}, or install the server (initdb)")


def as_url(dsn: str) -> str:
    """A libpq ``key=value`` string as a ``postgresql://`` URL (what ``open_store`` takes)."""
    from psycopg.conninfo import conninfo_to_dict

    params = {key: str(value) for key, value in conninfo_to_dict(dsn).items()}
    return "postgresql://?" + urlencode(params, quote_via=quote)


@contextmanager
def fresh_schema(dsn: str) -> Iterator[str]:
    """A new empty schema on the server; the DSN whose search_path is that schema."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"autopi_test_{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield as_url(make_conninfo(dsn, options=f"-c search_path={name}"))
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')
