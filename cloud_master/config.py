"""The master's configuration (master.yaml): Salt's master option names wherever Salt has one."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
import yaml

from autopi_common.config import ConfigError, Field, load, positive
from autopi_common.logging import LOG_LEVELS
from autopi_proto.rsa import ENCRYPTION_ALGORITHMS, SIGNING_ALGORITHMS

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MASTER_SCHEMA",
    "ConfigError",
    "load_master_config",
    "load_preseed_keys",
]

log = structlog.get_logger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/cloud-master/master.yaml")

_SHA256_FINGER = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){31}$")


def _keysize(value: int) -> str | None:
    return None if value >= 2048 else "a key size of 2048 bits or more"


def _roots(value: dict[str, Any]) -> str | None:
    ok = all(
        isinstance(paths, list) and all(isinstance(p, str) and p for p in paths)
        for paths in value.values()
    )
    return None if ok else "a mapping of environment name to a list of directories"


def _reactor(value: list[Any]) -> str | None:
    from cloud_master.reactor import check_reactor

    return check_reactor(value)


def _reactor_defaults(value: list[str]) -> str | None:
    from cloud_master.reactor import default_names

    known = default_names()
    unknown = [name for name in value if name not in known]
    return f"names from {known}" if unknown else None


MASTER_SCHEMA: tuple[Field, ...] = (
    Field("interface", "str", "0.0.0.0", "Address the publisher and request server bind."),
    Field("publish_port", "port", 4505, "Publisher port (PUB)."),
    Field("ret_port", "port", 4506, "Request server port (ROUTER): auth, returns, pillar."),
    Field("root_dir", "path", "/var/lib/cloud-master",
          "Base of the master's state; relative paths below resolve against it."),
    Field("pki_dir", "path", "pki/master",
          "Key store: master.pem/master.pub and the minions* directories."),
    Field("cachedir", "path", "cache", "Cache directory (job cache, sessions)."),
    Field("sock_dir", "path", "run", "Local sockets for the CLI and the event bus."),
    Field("log_level", "str", "info", "Log level (Salt's names).", choices=tuple(LOG_LEVELS)),
    Field("log_format", "str", "auto",
          "Log format: auto (console on a terminal, else JSON lines), json or console.",
          choices=("auto", "json", "console")),
    Field("auto_accept", "bool", False, "Accept every new minion key without review."),
    Field("preseed_keys_file", "str", "",
          "YAML mapping of minion id to the expected sha256 fingerprint of its public key; "
          "a minion presenting a matching key is accepted automatically, any other key is "
          "treated as an untrusted new key."),
    Field("publish_session", "int", 86400,
          "Seconds before the shared publish key is rotated.", check=positive),
    Field("loop_interval", "float", 60, "Seconds between maintenance passes (job expiry...).",
          check=positive),
    Field("keep_jobs", "float", 24, "Hours a job and its returns stay in the job cache.",
          check=positive),
    Field("job_cache", "str", "sqlite", "Job cache backend.", choices=("sqlite",)),
    Field("timeout", "float", 5, "Default seconds the CLI waits for returns.",
          check=positive),
    Field("gather_job_timeout", "float", 10,
          "Seconds to wait for minions to report on a still-running job.", check=positive),
    Field("keysize", "int", 2048, "RSA key size in bits for a newly created master key.",
          check=_keysize),
    Field("telemetry_store", "str", "",
          "Telemetry store URL: sqlite:///PATH or postgresql://USER:PASS@HOST/DB; "
          "empty means SQLite at <cachedir>/telemetry.sqlite."),
    Field("telemetry_retention_days", "float", 90,
          "Days samples stay in the telemetry store.", check=positive),
    Field("max_request_size", "int", 16777216,
          "Largest request frame in bytes; larger frames are dropped.", check=positive),
    Field("encryption_algorithm", "str", "OAEP-SHA224", "RSA OAEP variant used in _auth.",
          choices=ENCRYPTION_ALGORITHMS),
    Field("signing_algorithm", "str", "PKCS1v15-SHA224", "RSA signature scheme.",
          choices=SIGNING_ALGORITHMS),
    Field("file_roots", "dict", {"base": ["srv/salt"]},
          "State tree directories per environment.", check=_roots),
    Field("pillar_roots", "dict", {"base": ["srv/pillar"]},
          "Pillar tree directories per environment.", check=_roots),
    Field("reactor", "list", [],
          "Reactions to events, as in Salt: a list of {tag glob: [reaction, ...]}; a reaction "
          "is {local: FUN, tgt, tgt_type, arg, kwarg}, {runner: FUN, arg, kwarg} or "
          "{webhook: URL, body, headers}; strings are Jinja2 templates over tag and data.",
          check=_reactor),
    Field("reactor_defaults", "list[str]", ["dtc_query"],
          "Shipped reactions to switch on (see cloud_master/reactor_defaults.yaml); [] for none.",
          check=_reactor_defaults),
    Field("reactor_concurrency", "int", 8, "Reactions running at once.", check=positive),
    Field("reactor_rate_limit", "int", 30,
          "Most times one rule reacts to one tag per minute (stops reaction loops).",
          check=positive),
    Field("reactor_rule_rate_limit", "int", 600,
          "Most times one rule reacts per minute, whatever the tag.", check=positive),
    Field("reactor_webhook_timeout", "float", 10, "Seconds a webhook POST may take.",
          check=positive),
    Field("fleet_online_window", "float", 300,
          "Seconds since a vehicle was last heard from for fleet.summary to call it online.",
          check=positive),
    Field("open_mode", "bool", False,
          "Accepted so Salt configs load; never honoured (every key is checked)."),
)


def _resolve_roots(roots: dict[str, list[str]], root_dir: str) -> dict[str, list[str]]:
    base = Path(root_dir)
    return {
        env: [os.path.normpath(base / Path(p).expanduser()) for p in paths]
        for env, paths in roots.items()
    }


def load_master_config(
    path: Path | str | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The master's validated options; ``path`` None means defaults plus ``overrides``.

    Raises :class:`ConfigError` naming the file, the key and what was expected.
    """
    opts = load(path, MASTER_SCHEMA, overrides)
    for key in ("file_roots", "pillar_roots"):
        opts[key] = _resolve_roots(opts[key], opts["root_dir"])
    if opts["preseed_keys_file"]:
        opts["preseed_keys_file"] = os.path.normpath(
            Path(opts["root_dir"]) / Path(opts["preseed_keys_file"]).expanduser()
        )
    if opts["open_mode"]:
        log.warning("config.open_mode_ignored", reason="every minion key is always checked")
        opts["open_mode"] = False
    return opts


def load_preseed_keys(path: Path | str) -> dict[str, str]:
    """Read the factory allow-list: minion id -> sha256 fingerprint (lower-cased).

    Raises :class:`ConfigError` when the file is unreadable or an entry is malformed.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the preseed keys file: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of minion id to fingerprint")
    out: dict[str, str] = {}
    for minion_id, finger in data.items():
        text = str(finger).strip().lower() if isinstance(finger, str) else ""
        if not _SHA256_FINGER.match(text):
            raise ConfigError(
                f"{path}: key '{minion_id}': expected a sha256 fingerprint "
                f"(32 colon-separated hex pairs), got {finger!r}"
            )
        out[str(minion_id)] = text
    return out
