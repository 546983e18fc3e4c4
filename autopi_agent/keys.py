"""The agent's key pair and the master's public key, pinned or trusted on first use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from autopi_common.fsutil import ensure_dir, write_atomic
from autopi_common.keypair import KeyFileError, load_or_create_keypair, read_public
from autopi_proto import rsa
from autopi_proto.errors import KeyFormatError

__all__ = ["KeyFileError", "MasterKeyCache", "MasterKeyMismatch", "MinionKeys", "finger_hash"]

log = structlog.get_logger(__name__)

PRIVATE_NAME = "minion.pem"
PUBLIC_NAME = "minion.pub"
MASTER_PUB_NAME = "minion_master.pub"

# A fingerprint's hash is known from its length, so a pin made with Salt's hash_type works.
_HASH_BY_BYTES = {16: "md5", 20: "sha1", 28: "sha224", 32: "sha256", 48: "sha384", 64: "sha512"}


class MasterKeyMismatch(Exception):
    """The master presented a public key that is not the pinned or cached one."""


def finger_hash(finger: str) -> str:
    """The hash name that produced a colon-separated fingerprint, judged by its length."""
    size = len(finger.split(":"))
    try:
        return _HASH_BY_BYTES[size]
    except KeyError:
        raise ValueError(f"fingerprint {finger!r} is not one of Salt's hash lengths") from None


@dataclass(frozen=True, slots=True)
class MinionKeys:
    """The agent's RSA key pair: ``minion.pem`` (0400) and ``minion.pub`` (0644)."""

    private_key: rsa.RSAPrivateKey
    public_pem: str
    pki_dir: Path

    @classmethod
    def load_or_create(cls, pki_dir: Path | str, keysize: int = 2048) -> MinionKeys:
        """Load the pair from ``pki_dir`` (0700), creating it on first start.

        Raises :class:`KeyFileError` when the private key is readable by group or others,
        or cannot be parsed: such a key is never silently replaced.
        """
        pki = Path(pki_dir)
        pair = load_or_create_keypair(pki / PRIVATE_NAME, pki / PUBLIC_NAME, keysize)
        return cls(pair.private_key, pair.public_pem, pki)

    def fingerprint(self, hash_name: str = "sha256") -> str:
        """Salt's fingerprint of the public key (what the master's key list shows)."""
        return rsa.fingerprint(self.public_pem, hash_name)


class MasterKeyCache:
    """``minion_master.pub``: the master key this agent trusts, never silently replaced."""

    def __init__(self, pki_dir: Path | str, master_finger: str = "") -> None:
        self.path = Path(pki_dir) / MASTER_PUB_NAME
        self.master_finger = master_finger.strip().lower()
        if self.master_finger:
            finger_hash(self.master_finger)

    def cached(self) -> str | None:
        """The cached master public key, or None before the first successful check."""
        return read_public(self.path)

    def check(self, master_pub_pem: str | bytes) -> None:
        """Accept ``master_pub_pem`` or raise :class:`MasterKeyMismatch`; cache it on first use."""
        pem = rsa.clean_pem(master_pub_pem)
        try:
            rsa.load_public(pem)
        except KeyFormatError as err:
            raise MasterKeyMismatch(f"the master sent an unusable public key: {err}") from err
        if self.master_finger:
            self._check_pin(pem)
        cached = self.cached()
        if cached is not None:
            if rsa.clean_pem(cached) != pem:
                log.error("master_key.changed", path=str(self.path),
                          presented=rsa.fingerprint(pem), cached=rsa.fingerprint(cached))
                raise MasterKeyMismatch(
                    f"the master's public key differs from the one cached in {self.path} "
                    f"(presented {rsa.fingerprint(pem)}, cached {rsa.fingerprint(cached)}); "
                    "if the master's key really changed, delete that file and restart"
                )
            return
        self._store(pem)

    def _check_pin(self, pem: str) -> None:
        presented = rsa.fingerprint(pem, finger_hash(self.master_finger))
        if presented != self.master_finger:
            log.error("master_key.finger_mismatch", pinned=self.master_finger,
                      presented=presented)
            raise MasterKeyMismatch(
                f"the master's public key fingerprint {presented} does not match "
                f"master_finger {self.master_finger}; check the master address and key"
            )

    def _store(self, pem: str) -> None:
        ensure_dir(self.path.parent, 0o700)
        write_atomic(self.path, (pem + "\n").encode("ascii"), 0o644)
        finger = rsa.fingerprint(pem)
        if self.master_finger:
            log.info("master_key.pinned_cached", path=str(self.path), finger=finger)
        else:
            log.warning("master_key.trusted_on_first_use", path=str(self.path), finger=finger)
