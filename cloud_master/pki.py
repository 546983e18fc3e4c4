"""The master's key store in Salt's on-disk layout, and Salt's rules for a minion's key.

Layout under ``pki_dir``: ``master.pem`` (0400) and ``master.pub``, then one file per
minion id, holding its public key PEM, in ``minions/`` (accepted), ``minions_pre/``
(pending), ``minions_rejected/`` and ``minions_denied/`` (a key presented for an id that
already has a different one).

Exceptions::

    KeyStoreError
     ├── InvalidMinionId (ValueError)   an id that could name a path outside the store
     └── InvalidPublicKey (ValueError)  a presented key that is not an RSA public key
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import structlog

from autopi_common.fsutil import ensure_dir, fsync_dir, write_atomic
from autopi_common.keypair import load_or_create_keypair
from autopi_proto import rsa
from autopi_proto.errors import KeyFormatError

__all__ = [
    "InvalidMinionId",
    "InvalidPublicKey",
    "KeyState",
    "KeyStore",
    "KeyStoreError",
    "MasterKeys",
    "valid_id",
]

log = structlog.get_logger(__name__)

Ids = list[str]


class KeyStoreError(Exception):
    """Root of the key store's errors."""


class InvalidMinionId(KeyStoreError, ValueError):
    """A minion id that is empty, too long, or could escape the key directories."""


class InvalidPublicKey(KeyStoreError, ValueError):
    """A presented public key that does not parse as RSA."""


class KeyState(StrEnum):
    """Where a minion's key is; the value is salt-key's word for it."""

    ACCEPTED = "accepted"
    PENDING = "pending"
    REJECTED = "rejected"
    DENIED = "denied"


DIRS: dict[KeyState, str] = {
    KeyState.ACCEPTED: "minions",
    KeyState.PENDING: "minions_pre",
    KeyState.REJECTED: "minions_rejected",
    KeyState.DENIED: "minions_denied",
}
# Salt looks an id up in this order, so after an interrupted move the stricter state wins.
_LOOKUP_ORDER = (KeyState.REJECTED, KeyState.PENDING, KeyState.ACCEPTED)
_MAX_ID_BYTES = 255


def valid_id(minion_id: object) -> bool:
    """True when ``minion_id`` is safe as a file name in the key directories.

    As Salt: non-empty, no ``/``, ``\\`` or NUL. Stricter: no ``..``, no leading dot
    (hidden and temporary files), no control characters, at most 255 bytes.
    """
    if not isinstance(minion_id, str) or not minion_id or minion_id.startswith("."):
        return False
    if any(ch in minion_id for ch in ("/", "\\", "\0")) or ".." in minion_id:
        return False
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in minion_id):
        return False
    try:
        return len(minion_id.encode("utf-8")) <= _MAX_ID_BYTES
    except UnicodeEncodeError:
        return False


def _check_id(minion_id: str) -> None:
    if not valid_id(minion_id):
        raise InvalidMinionId(f"invalid minion id {minion_id!r}")


def _same_key(left: str, right: str) -> bool:
    return rsa.clean_pem(left) == rsa.clean_pem(right)


@dataclass(frozen=True, slots=True)
class MasterKeys:
    """The master's key pair."""

    private_key: rsa.RSAPrivateKey
    public_pem: str

    def fingerprint(self, hash_name: str = "sha256") -> str:
        """What a minion pins as ``master_finger``."""
        return rsa.fingerprint(self.public_pem, hash_name)


class KeyStore:
    """Minion keys and the master key pair under ``pki_dir``; every write is atomic."""

    def __init__(self, pki_dir: Path | str, keysize: int = 2048) -> None:
        self.pki_dir = Path(pki_dir)
        self.keysize = keysize
        self._master: MasterKeys | None = None
        self._lock = threading.Lock()

    # -- the master's own keys -------------------------------------------------------

    def master_keys(self) -> MasterKeys:
        """The master key pair, created (master.pem 0400, master.pub 0644) on first use."""
        with self._lock:
            if self._master is None:
                pair = load_or_create_keypair(
                    self.pki_dir / "master.pem", self.pki_dir / "master.pub", self.keysize
                )
                self._master = MasterKeys(pair.private_key, pair.public_pem)
            return self._master

    # -- reading ---------------------------------------------------------------------

    def _path(self, state: KeyState, minion_id: str) -> Path:
        return self.pki_dir / DIRS[state] / minion_id

    def pub(self, minion_id: str, state: KeyState) -> str | None:
        """The PEM stored for ``minion_id`` in ``state``, or None (also for an invalid id)."""
        if not valid_id(minion_id):
            return None
        path = self._path(state, minion_id)
        # A symlink planted in a key directory is never followed, as in Salt.
        if path.is_symlink() or not path.is_file():
            return None
        try:
            return path.read_text(encoding="ascii")
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def get(self, minion_id: str) -> tuple[KeyState, str] | None:
        """The state and key of ``minion_id`` (denied keys aside), or None if unknown."""
        for state in _LOOKUP_ORDER:
            pem = self.pub(minion_id, state)
            if pem is not None:
                return state, pem
        return None

    def accepted_pub(self, minion_id: str) -> str | None:
        """The accepted public key of ``minion_id``, or None if it is not accepted."""
        found = self.get(minion_id)
        return found[1] if found is not None and found[0] is KeyState.ACCEPTED else None

    def _ids(self, state: KeyState) -> Ids:
        try:
            entries = list(os.scandir(self.pki_dir / DIRS[state]))
        except FileNotFoundError:
            return []
        names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
        return sorted((n for n in names if valid_id(n)), key=lambda n: (n.lower(), n))

    def list(self) -> dict[KeyState, Ids]:
        """Every id by state, sorted case-insensitively like salt-key -L."""
        listing = {state: self._ids(state) for state in KeyState}
        # An id left in two directories by an interrupted move shows only its lookup state.
        for state in (KeyState.PENDING, KeyState.ACCEPTED):
            stricter = _LOOKUP_ORDER[: _LOOKUP_ORDER.index(state)]
            seen = {i for s in stricter for i in listing[s]}
            listing[state] = [i for i in listing[state] if i not in seen]
        return listing

    def match(
        self, pattern: str, states: Iterable[KeyState] | None = None
    ) -> dict[KeyState, Ids]:
        """Ids matching a glob, or a comma-separated list of globs, by state (non-empty)."""
        globs = [p.strip() for p in pattern.split(",") if p.strip()]
        wanted = set(KeyState if states is None else states)
        found: dict[KeyState, Ids] = {}
        for state, ids in self.list().items():
            hits = [i for i in ids if any(fnmatch.fnmatchcase(i, g) for g in globs)]
            if state in wanted and hits:
                found[state] = hits
        return found

    def finger(self, pattern: str, hash_name: str = "sha256") -> dict[KeyState, dict[str, str]]:
        """Fingerprints of the matching keys, by state."""
        out: dict[KeyState, dict[str, str]] = {}
        for state, ids in self.match(pattern).items():
            for minion_id in ids:
                pem = self.pub(minion_id, state)
                if pem is not None:
                    out.setdefault(state, {})[minion_id] = rsa.fingerprint(pem, hash_name)
        return out

    # -- writing ---------------------------------------------------------------------

    def _store(self, minion_id: str, state: KeyState, pem: str) -> None:
        directory = ensure_dir(self.pki_dir / DIRS[state], 0o700)
        write_atomic(directory / minion_id, (rsa.clean_pem(pem) + "\n").encode("ascii"))
        if state is KeyState.DENIED:
            return
        # Written first, removed second: a crash in between leaves the stricter state.
        for other in _LOOKUP_ORDER:
            if other is not state:
                self._remove(minion_id, other)

    def _remove(self, minion_id: str, state: KeyState) -> bool:
        path = self._path(state, minion_id)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(path.parent)
            return True
        return False

    def _move(self, matches: Mapping[KeyState, Ids], to: KeyState) -> dict[KeyState, Ids]:
        changed: dict[KeyState, Ids] = {}
        for state, ids in matches.items():
            for minion_id in ids:
                pem = self.pub(minion_id, state)
                if pem is None:
                    continue  # gone since it was listed (another process acted)
                try:
                    rsa.load_public(pem)
                except KeyFormatError:
                    log.error("key.unusable", minion=minion_id, state=str(state))
                    continue
                self._store(minion_id, to, pem)
                log.info(f"key.{to}", minion=minion_id, previous=str(state))
                changed.setdefault(state, []).append(minion_id)
        return changed

    def accept(self, pattern: str, *, include_rejected: bool = False) -> dict[KeyState, Ids]:
        """Accept pending keys (and rejected ones if asked); returns what moved, by old state."""
        states = [KeyState.PENDING] + ([KeyState.REJECTED] if include_rejected else [])
        return self._move(self.match(pattern, states), KeyState.ACCEPTED)

    def reject(self, pattern: str, *, include_accepted: bool = False) -> dict[KeyState, Ids]:
        """Reject pending keys (and accepted ones if asked); returns what moved, by old state."""
        states = [KeyState.PENDING] + ([KeyState.ACCEPTED] if include_accepted else [])
        return self._move(self.match(pattern, states), KeyState.REJECTED)

    def delete(self, pattern: str) -> dict[KeyState, Ids]:
        """Delete matching keys in every state, denied included; returns what was removed."""
        removed: dict[KeyState, Ids] = {}
        for state, ids in self.match(pattern).items():
            for minion_id in ids:
                if self._remove(minion_id, state):
                    log.info("key.deleted", minion=minion_id, state=str(state))
                    removed.setdefault(state, []).append(minion_id)
        return removed

    # -- a minion authenticating -----------------------------------------------------

    def register(
        self,
        minion_id: str,
        pub_pem: str,
        *,
        auto_accept: bool = False,
        preseed: Mapping[str, str] | None = None,
    ) -> KeyState:
        """Record a key presented in ``_auth`` and return the minion's resulting state.

        Salt's rules: a rejected id stays rejected; a key that differs from the accepted
        or pending one is filed under denied (and the stored key is kept); a new or
        pending key is accepted when ``auto_accept`` is on or ``preseed`` maps the id
        to this key's sha256 fingerprint, else it is pending.
        Raises :class:`InvalidMinionId` or :class:`InvalidPublicKey`.
        """
        _check_id(minion_id)
        try:
            rsa.load_public(pub_pem)
        except KeyFormatError as err:
            raise InvalidPublicKey(f"minion {minion_id!r} presented {err}") from err
        current = self.get(minion_id)
        if current is not None and current[0] is KeyState.REJECTED:
            log.info("auth.rejected", minion=minion_id)
            return KeyState.REJECTED
        if current is not None and not _same_key(current[1], pub_pem):
            self._store(minion_id, KeyState.DENIED, pub_pem)
            log.error("auth.key_mismatch", minion=minion_id, state=str(current[0]),
                      presented=rsa.fingerprint(pub_pem))
            return KeyState.DENIED
        if current is not None and current[0] is KeyState.ACCEPTED:
            return KeyState.ACCEPTED
        if auto_accept or self._preseeded(minion_id, pub_pem, preseed):
            self._store(minion_id, KeyState.ACCEPTED, pub_pem)
            log.info("auth.auto_accepted", minion=minion_id, preseed=not auto_accept)
            return KeyState.ACCEPTED
        if current is None:
            self._store(minion_id, KeyState.PENDING, pub_pem)
            log.info("auth.pending", minion=minion_id, finger=rsa.fingerprint(pub_pem))
        return KeyState.PENDING

    @staticmethod
    def _preseeded(minion_id: str, pub_pem: str, preseed: Mapping[str, str] | None) -> bool:
        if not preseed or minion_id not in preseed:
            return False
        expected = preseed[minion_id].strip().lower()
        presented = rsa.fingerprint(pub_pem, "sha256")
        if presented != expected:
            log.warning("auth.preseed_mismatch", minion=minion_id, expected=expected,
                        presented=presented)
            return False
        return True
