"""Run real Salt 3008 daemons and CLIs as the peer in interoperability tests (no pytest here)."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = structlog.get_logger(__name__)

ENV_VAR = "AUTOPI_SALT_VENV"
DEFAULT_VENV = Path(__file__).resolve().parents[2] / ".cache" / "salt-venv"
# Salt's IPC sockets live under root_dir and AF_UNIX paths stop at 107 bytes.
MAX_ROOT_DIR_LEN = 60
MINION_READY_LINE = "Minion is ready to receive requests!"
LOG_NOISE = ("jinja filter", "jinja global", "jinja test", "loaded by dir()", "LazyLoad")


class SaltPeerError(Exception):
    """Root of the harness errors.

    SaltPeerError
    ├── SaltPeerUnavailable   the Salt venv is absent and this is not CI (callers skip)
    ├── SaltPeerTimeout       a daemon or CLI did not get ready in time (also TimeoutError)
    └── SaltCliError          a Salt CLI exited non-zero or printed unparsable output
    """


class SaltPeerUnavailable(SaltPeerError):
    """The real Salt peer is not installed here; outside CI the tests skip."""


class SaltPeerTimeout(SaltPeerError, TimeoutError):
    """A Salt daemon or CLI did not reach the expected state in time."""


class SaltCliError(SaltPeerError):
    """A Salt CLI failed or printed output that is not the expected JSON."""


@dataclass(frozen=True, slots=True)
class SaltVenv:
    """A virtual environment with Salt installed."""

    path: Path

    def executable(self, name: str) -> Path:
        """Return the path of a Salt script (salt-master, salt, salt-key …) in this venv."""
        return self.path / "bin" / name


def in_ci(env: Mapping[str, str] | None = None) -> bool:
    """Return True under CI (env CI=true), where a missing peer is an error, not a skip."""
    value = (os.environ if env is None else env).get("CI", "")
    return value.strip().lower() in ("1", "true", "yes")


def find_salt_venv(env: Mapping[str, str] | None = None) -> SaltVenv:
    """Locate the Salt venv from $AUTOPI_SALT_VENV, else the repo's .cache/salt-venv."""
    environ = os.environ if env is None else env
    configured = environ.get(ENV_VAR)
    venv = SaltVenv(Path(configured) if configured else DEFAULT_VENV)
    if all(venv.executable(name).is_file() for name in ("salt-master", "salt-minion")):
        return venv
    message = f"real Salt peer not found at {venv.path} (set {ENV_VAR} or run `make salt-peer`)"
    if in_ci(environ):
        raise SaltPeerError(message + "; CI requires it")
    raise SaltPeerUnavailable(message)


def free_ports(count: int) -> list[int]:
    """Pick `count` distinct free TCP ports on 127.0.0.1 (released before returning)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Return True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate()` every 50 ms until true, or raise SaltPeerTimeout naming `what`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SaltPeerTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _salt_env() -> dict[str, str]:
    # The Salt venv must not pick up the project interpreter's module path.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _check_root_dir(root_dir: Path) -> Path:
    root = root_dir.resolve()
    if len(str(root)) > MAX_ROOT_DIR_LEN:
        raise SaltPeerError(
            f"root_dir {root} is longer than {MAX_ROOT_DIR_LEN} characters; Salt's IPC "
            "socket paths under it would overflow AF_UNIX limits: use a shorter temp dir"
        )
    return root


def _common_opts(root: Path, log_level: str) -> dict[str, Any]:
    return {
        "root_dir": str(root), "pki_dir": str(root / "pki"), "cachedir": str(root / "cache"),
        "sock_dir": str(root / "run"), "pidfile": str(root / "salt.pid"),
        "log_file": str(root / "salt.log"), "log_level": "warning",
        "log_level_logfile": log_level, "user": getpass.getuser(), "transport": "zeromq",
        # Both grains probe slow things (GPUs via lspci, reverse DNS for every address).
        "enable_gpu_grains": False, "enable_fqdns_grains": False,
    }


def master_opts(
    root_dir: Path, *, publish_port: int, ret_port: int, auto_accept: bool = False,
    log_level: str = "debug", extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a fast-starting salt-master config confined to root_dir on 127.0.0.1."""
    root = _check_root_dir(root_dir)
    opts = _common_opts(root, log_level)
    opts.update(
        interface="127.0.0.1", publish_port=publish_port, ret_port=ret_port,
        auto_accept=auto_accept,
        # Two workers fork faster than the default five and are plenty for tests.
        worker_threads=2,
        # Salt refuses to start without a fileserver backend; roots on an empty dir is free.
        fileserver_backend=["roots"],
        file_roots={"base": [str(root / "srv" / "salt")]},
        pillar_roots={"base": [str(root / "srv" / "pillar")]},
    )
    opts.update(extra or {})
    return opts


def minion_opts(
    root_dir: Path, *, minion_id: str, master_port: int, publish_port: int,
    log_level: str = "debug", extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a quickly-authenticating salt-minion config for a master on 127.0.0.1."""
    opts = _common_opts(_check_root_dir(root_dir), log_level)
    opts.update(
        id=minion_id, master="127.0.0.1", master_port=master_port, publish_port=publish_port,
        # Retry a pending _auth every second instead of every 10 s.
        acceptance_wait_time=1, acceptance_wait_time_max=1, random_reauth_delay=0,
        auth_safemode=False,
        # Reconnect the SUB socket within 0.5 s instead of a random 1-11 s.
        recon_default=200, recon_max=500, recon_randomize=False,
    )
    opts.update(extra or {})
    return opts


def write_config(config_dir: Path, filename: str, opts: Mapping[str, Any]) -> Path:
    """Write opts as the Salt YAML config file `config_dir/filename`; return its path."""
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / filename
    path.write_text(yaml.safe_dump(dict(opts), default_flow_style=False))
    return path


@dataclass(frozen=True, slots=True)
class CliResult:
    """The outcome of one Salt CLI run."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """Parse stdout: one JSON document, or merge the per-minion documents of a stream."""
        decoder, text, docs = json.JSONDecoder(), self.stdout.strip(), []
        try:
            while text:
                doc, end = decoder.raw_decode(text)
                docs.append(doc)
                text = text[end:].lstrip()
        except ValueError as err:
            raise SaltCliError(f"{self.describe()}\nstdout is not JSON: {err}") from err
        if len(docs) == 1:
            return docs[0]
        if not all(isinstance(doc, dict) for doc in docs):
            raise SaltCliError(f"{self.describe()}\nexpected one JSON object per minion")
        return {key: value for doc in docs for key, value in doc.items()}

    def describe(self) -> str:
        """Summarise the run for an assertion message."""
        return (
            f"$ {' '.join(self.args)}\nexit {self.returncode}\n"
            f"stdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"
        )


def run_cli(args: Sequence[str], *, cwd: Path, timeout: float, check: bool = True) -> CliResult:
    """Run one Salt CLI command; raise SaltCliError on a non-zero exit when `check`."""
    try:
        proc = subprocess.run(
            list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, check=False, env=_salt_env(),
        )
    except subprocess.TimeoutExpired as err:
        raise SaltPeerTimeout(f"$ {' '.join(args)} took longer than {timeout} s") from err
    result = CliResult(tuple(args), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise SaltCliError(result.describe())
    return result


def generate_minion_keys(pki_dir: Path, bits: int = 2048) -> str:
    """Write minion.pem/minion.pub as Salt does (PKCS#1 private, SPKI public); return the pub."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, data in (("minion.pem", private), ("minion.pub", public)):
        (pki_dir / name).write_bytes(data)
        (pki_dir / name).chmod(0o400)
    return public.decode()


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join([line for line in text if not any(n in line for n in LOG_NOISE)][-lines:])


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in group `pgid`; zombies wait on init."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # Fields after the parenthesised command: state, ppid, pgrp, …
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                return True
    return False


class SaltDaemon:
    """One Salt daemon, started in its own session from a config dir under root_dir."""

    program = ""
    config_name = ""
    stop_grace = 5.0

    def __init__(self, venv: SaltVenv, root_dir: Path, opts: Mapping[str, Any]) -> None:
        self.venv = venv
        self.root_dir = _check_root_dir(root_dir)
        self.opts = dict(opts)
        self.config_dir = self.root_dir / "conf"
        self.log_path = Path(self.opts["log_file"])
        self.output_path = self.root_dir / "daemon.out"
        self._proc: subprocess.Popen[bytes] | None = None
        write_config(self.config_dir, self.config_name, self.opts)

    @property
    def pid(self) -> int | None:
        """PID of the daemon's main process (also its process group), None before start()."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        """True while the daemon's main process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Spawn the daemon as a session leader so stop() can end its whole process tree."""
        if self.running:
            raise SaltPeerError(f"{self.program} in {self.root_dir} is already running")
        args = [str(self.venv.executable(self.program)), "-c", str(self.config_dir)]
        with self.output_path.open("ab") as out:
            self._proc = subprocess.Popen(
                args, cwd=self.root_dir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, env=_salt_env(),
            )
        log.info("saltpeer.started", program=self.program, pid=self._proc.pid)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the daemon's process group, SIGKILL it after the grace time, reap it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self.stop_grace if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        # Children that outlived the main process are still in its group.
        self._signal_group(proc.pid, signal.SIGKILL)
        wait_for(lambda: not _group_alive(proc.pid), 5.0, f"{self.program} to exit")
        log.info("saltpeer.stopped", program=self.program, pid=proc.pid)

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    def log_text(self) -> str:
        """Return the daemon's whole log file ('' before it exists)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def diagnostics(self, lines: int = 60) -> str:
        """Tail of the daemon's log and console output, for assertion messages."""
        return (
            f"--- {self.program} log tail ({self.log_path}) ---\n{_tail(self.log_path, lines)}\n"
            f"--- {self.program} console ---\n{_tail(self.output_path, 20)}"
        )

    def wait_until(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        """Like wait_for, but fail at once if the daemon dies, and attach its logs."""
        def alive_and_ready() -> bool:
            if not self.running:
                raise SaltPeerError(f"{self.program} exited while {what}\n{self.diagnostics()}")
            return bool(predicate())

        try:
            wait_for(alive_and_ready, timeout, what)
        except SaltPeerTimeout as err:
            raise SaltPeerTimeout(f"{err}\n{self.diagnostics()}") from err


class SaltMaster(SaltDaemon):
    """A stock salt-master bound to 127.0.0.1 on free ports."""

    program = "salt-master"
    config_name = "master"

    @classmethod
    def create(
        cls, venv: SaltVenv, root_dir: Path, *, auto_accept: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> SaltMaster:
        """Allocate ports and write the config; call start() and wait_ready() next."""
        publish_port, ret_port = free_ports(2)
        opts = master_opts(
            root_dir, publish_port=publish_port, ret_port=ret_port, auto_accept=auto_accept,
            extra=extra,
        )
        for roots in ("file_roots", "pillar_roots"):
            Path(opts[roots]["base"][0]).mkdir(parents=True, exist_ok=True)
        return cls(venv, root_dir, opts)

    @property
    def publish_port(self) -> int:
        """The PUB port (4505 in production)."""
        return int(self.opts["publish_port"])

    @property
    def ret_port(self) -> int:
        """The request (ROUTER) port (4506 in production)."""
        return int(self.opts["ret_port"])

    @property
    def pki_dir(self) -> Path:
        """The master's pki dir (minions, minions_pre, …, master.pem)."""
        return Path(self.opts["pki_dir"])

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until both ports accept and the master wrote its readiness sentinel."""
        ready = Path(self.opts["cachedir"]) / "health" / "ready"
        self.wait_until(
            lambda: ready.exists() and port_open(self.ret_port) and port_open(self.publish_port),
            timeout, "salt-master to listen",
        )

    def cli(self, tool: str, *args: str, timeout: float = 60.0, check: bool = True) -> CliResult:
        """Run a master-side CLI (salt, salt-key, salt-run) against this master's config."""
        argv = [str(self.venv.executable(tool)), "-c", str(self.config_dir), *args]
        return run_cli(argv, cwd=self.root_dir, timeout=timeout, check=check)

    def salt(
        self, target: str, fun: str, *args: str, tgt_type: str = "glob", timeout: int = 15,
        static: bool = True, extra_args: Sequence[str] = (),
    ) -> Any:
        """Run `salt [--grain|--list|…] TARGET FUN ARGS --out json`; return {minion: return}.

        static=True adds --static, with which the CLI first pings TARGET and then
        publishes the job to the responders as a *list* target; static=False publishes
        once with TARGET as given and streams one JSON document per minion.
        """
        flags = [] if tgt_type == "glob" else [f"--{tgt_type}"]
        if static:
            flags.append("--static")
        argv = [*flags, "--out", "json", "-t", str(timeout), *extra_args, target, fun, *args]
        result = self.cli("salt", *argv, timeout=timeout + 30, check=False)
        if not result.stdout.strip():
            raise SaltCliError(f"{result.describe()}\n{self.diagnostics()}")
        return result.json()

    def key_lists(self) -> dict[str, list[str]]:
        """Return `salt-key -L` as {"minions": [...], "minions_pre": [...], ...}."""
        lists: dict[str, list[str]] = self.cli("salt-key", "-L", "--out", "json").json()
        return lists

    def accept_key(self, minion_id: str) -> None:
        """Accept one pending minion key with `salt-key -y -a ID`."""
        self.cli("salt-key", "-y", "-a", minion_id)
        if not (self.pki_dir / "minions" / minion_id).is_file():
            raise SaltCliError(f"salt-key did not accept {minion_id}\n{self.diagnostics()}")

    def wait_key(self, minion_id: str, state: str = "minions_pre", timeout: float = 30.0) -> None:
        """Wait until the minion's key is in pki_dir/`state` (minions_pre, minions, …)."""
        path = self.pki_dir / state / minion_id
        self.wait_until(path.is_file, timeout, f"key {minion_id} in {state}")

    def preaccept(self, minion: SaltMinion) -> None:
        """Give `minion` a fresh key pair and install its public key here as accepted."""
        public = generate_minion_keys(minion.pki_dir)
        accepted = self.pki_dir / "minions"
        accepted.mkdir(parents=True, exist_ok=True)
        (accepted / minion.minion_id).write_text(public)


class SaltMinion(SaltDaemon):
    """A stock salt-minion pointed at a master on 127.0.0.1 (Salt's or ours)."""

    program = "salt-minion"
    config_name = "minion"
    # salt-minion takes ~8 s to honour SIGTERM; tests gain nothing from waiting for it.
    stop_grace = 0.5

    @classmethod
    def create(
        cls, venv: SaltVenv, root_dir: Path, *, minion_id: str, master_port: int,
        publish_port: int, extra: Mapping[str, Any] | None = None,
    ) -> SaltMinion:
        """Write the config; call start() and wait_ready() next."""
        opts = minion_opts(
            root_dir, minion_id=minion_id, master_port=master_port, publish_port=publish_port,
            extra=extra,
        )
        return cls(venv, root_dir, opts)

    @property
    def minion_id(self) -> str:
        """The minion's id."""
        return str(self.opts["id"])

    @property
    def pki_dir(self) -> Path:
        """The minion's pki dir (minion.pem, minion.pub, minion_master.pub)."""
        return Path(self.opts["pki_dir"])

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the minion has authenticated, fetched pillar and tuned in."""
        self.wait_until(
            lambda: MINION_READY_LINE in self.log_text(), timeout,
            f"salt-minion {self.minion_id} to authenticate",
        )

    def salt_call(self, fun: str, *args: str, local: bool = False, timeout: float = 60.0) -> Any:
        """Run `salt-call --out json FUN ARGS` with this minion's config; return its value."""
        flags = ["--local"] if local else []
        argv = [str(self.venv.executable("salt-call")), "-c", str(self.config_dir), *flags,
                "--out", "json", fun, *args]
        return run_cli(argv, cwd=self.root_dir, timeout=timeout).json()["local"]


# Signatures of the conftest factories, for annotating tests.
MasterFactory = Callable[..., SaltMaster]
MinionFactory = Callable[..., SaltMinion]
