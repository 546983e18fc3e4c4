#!/usr/bin/env python3
"""Merge cards' first-boot identities into the cloud master's allow-list (preseed_keys_file).

Each card writes ``autopi-identity.yaml`` (``<minion id>: "<sha256 fingerprint>"``) on its
boot partition at first boot. The master accepts a listed minion whose key has exactly
that fingerprint. Restart the master after a merge so it reads the file again.

    image/factory_preseed.py /etc/cloud-master/preseed.yaml /media/bootfs/autopi-identity.yaml

An id already listed with another fingerprint is refused (a re-flashed card made a new
key); ``--replace`` takes the new one.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import yaml

SHA256_FINGER = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){31}$")


class PreseedError(Exception):
    """An identity or allow-list file that cannot be merged; the message says why."""


def read_mapping(path: Path, *, missing_ok: bool = False) -> dict[str, str]:
    """A YAML ``id: fingerprint`` mapping, fingerprints lower-cased and checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise PreseedError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PreseedError(f"{path}: cannot read: {err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PreseedError(f"{path}: not YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PreseedError(f"{path}: expected a mapping of minion id to fingerprint")
    out: dict[str, str] = {}
    for minion_id, finger in data.items():
        text_finger = finger.strip().lower() if isinstance(finger, str) else ""
        if not SHA256_FINGER.match(text_finger):
            raise PreseedError(f"{path}: {minion_id!r}: expected a sha256 fingerprint "
                               f"(32 colon-separated hex pairs), got {finger!r}")
        out[str(minion_id)] = text_finger
    return out


def merge(allowed: dict[str, str], identities: dict[str, str], *, replace: bool
          ) -> dict[str, str]:
    """``allowed`` plus ``identities``; a changed fingerprint needs ``replace``."""
    merged = dict(allowed)
    for minion_id, finger in identities.items():
        known = merged.get(minion_id)
        if known is not None and known != finger and not replace:
            raise PreseedError(f"{minion_id} is already listed with {known}, not {finger}; "
                               "use --replace if this card was re-flashed")
        merged[minion_id] = finger
    return merged


def write_atomic(path: Path, mapping: dict[str, str]) -> None:
    """Write the allow-list through a temporary file, keeping an existing file's mode."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o640
    body = "# minion id -> sha256 fingerprint of its public key (cloud-master preseed_keys_file)\n"
    body += yaml.safe_dump(dict(sorted(mapping.items())), default_flow_style=False)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preseed", type=Path, help="the master's preseed_keys_file")
    parser.add_argument("identities", type=Path, nargs="+", help="autopi-identity.yaml files")
    parser.add_argument("--replace", action="store_true",
                        help="take a new fingerprint for an id that is already listed")
    ns = parser.parse_args(argv)
    try:
        allowed = read_mapping(ns.preseed, missing_ok=True)
        for identity in ns.identities:
            found = read_mapping(identity)
            allowed = merge(allowed, found, replace=ns.replace)
            for minion_id, finger in found.items():
                print(f"{minion_id}: {finger}")
        write_atomic(ns.preseed, allowed)
    except PreseedError as err:
        print(f"factory_preseed: {err}", file=sys.stderr)
        return 1
    print(f"{ns.preseed}: {len(allowed)} minion(s) allowed; restart cloud-master to apply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
