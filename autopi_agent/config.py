"""The agent's configuration (agent.yaml): Salt's minion option names wherever Salt has one."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopi_agent.dropins import load_layers
from autopi_agent.gpio import GPIO_SCHEMA
from autopi_agent.minion.logger_spec import check_loggers
from autopi_agent.minion.mine import check_mine_functions
from autopi_agent.minion.schedule_spec import check_schedule
from autopi_agent.minion.vehicle_events import VEHICLE_EVENTS_SCHEMA
from autopi_agent.obd.settings import OBD_SCHEMA
from autopi_agent.power.settings import POWER_SCHEMA
from autopi_common.config import ConfigError, Field, load, non_negative, positive
from autopi_common.logging import LOG_LEVELS
from autopi_proto.rsa import ENCRYPTION_ALGORITHMS, SIGNING_ALGORITHMS

__all__ = ["AGENT_SCHEMA", "DEFAULT_CONFIG_PATH", "ConfigError", "load_agent_config"]

DEFAULT_CONFIG_PATH = Path("/etc/autopi-agent/agent.yaml")

_FINGER = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2})+$")
# Byte lengths of the hashes Salt's hash_type allows: md5, sha1, sha224, sha256, sha384, sha512.
FINGER_LENGTHS = (16, 20, 28, 32, 48, 64)


def check_finger(value: str) -> str | None:
    """None when ``value`` is empty or looks like Salt's colon-separated fingerprint."""
    if not value:
        return None
    if _FINGER.match(value) and (len(value) + 1) // 3 in FINGER_LENGTHS:
        return None
    return "a fingerprint as colon-separated hex pairs (as 'cloud-master key finger' prints)"


def _keysize(value: int) -> str | None:
    return None if value >= 2048 else "a key size of 2048 bits or more"


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "a non-empty string"


AGENT_SCHEMA: tuple[Field, ...] = (
    Field("id", "str", None, "This agent's minion id (default: the host name).",
          check=_non_empty),
    Field("master", "str|list[str]", "salt",
          "Master host name or address, or a list of them (tried in order)."),
    Field("master_port", "port", 4506, "Master request server port (ROUTER)."),
    Field("publish_port", "port", 4505, "Master publisher port (PUB)."),
    Field("root_dir", "path", "/var/lib/autopi-agent",
          "Base of the agent's state; relative paths below resolve against it."),
    Field("pki_dir", "path", "pki/minion",
          "Directory of minion.pem, minion.pub and minion_master.pub (mode 0700)."),
    Field("cachedir", "path", "cache", "Cache directory (spool, pillar, grains cache)."),
    Field("sock_dir", "path", "run",
          "Directory of the socket `autopi-agent call` reaches the running daemon on (0700)."),
    Field("local_calls", "bool", True,
          "Serve `autopi-agent call` from the running daemon (it owns the adapter and the MCU)."),
    Field("log_level", "str", "info", "Log level (Salt's names).",
          choices=tuple(LOG_LEVELS)),
    Field("log_format", "str", "auto",
          "Log format: auto (console on a terminal, else JSON lines), json or console.",
          choices=("auto", "json", "console")),
    Field("acceptance_wait_time", "float", 10,
          "Seconds to wait between authentication attempts while the key is pending.",
          check=positive),
    Field("acceptance_wait_time_max", "float", 0,
          "Upper bound of the wait as it grows after each attempt; 0 disables growth.",
          check=non_negative),
    Field("auth_timeout", "float", 60, "Seconds to wait for the master's reply to _auth.",
          check=positive),
    Field("auth_tries", "int", 7, "Authentication attempts before reconnecting.",
          check=positive),
    Field("master_finger", "str", "",
          "Pinned fingerprint of the master's public key; empty trusts it on first use.",
          check=check_finger),
    Field("recon_default", "int", 1000, "Initial reconnect delay, milliseconds.",
          check=positive),
    Field("recon_max", "int", 10000, "Largest reconnect delay, milliseconds.",
          check=positive),
    Field("recon_randomize", "bool", True,
          "Randomise the reconnect delay so a fleet does not storm a restarted master."),
    Field("random_reauth_delay", "float", 10,
          "Largest random delay, seconds, before re-authenticating after a key rotation.",
          check=non_negative),
    Field("tcp_keepalive", "bool", True, "Enable TCP keepalive on the master connections."),
    Field("tcp_keepalive_idle", "int", 30, "Seconds idle before keepalive probes start.",
          check=positive),
    Field("tcp_keepalive_cnt", "int", 3, "Unanswered keepalive probes before the link drops.",
          check=positive),
    Field("tcp_keepalive_intvl", "int", 10, "Seconds between keepalive probes.",
          check=positive),
    Field("heartbeat_interval", "float", 15,
          "Seconds between ZeroMQ heartbeats (detects half-open cellular links).",
          check=positive),
    Field("heartbeat_timeout", "float", 45,
          "Seconds without a heartbeat reply before the connection is considered dead.",
          check=positive),
    Field("keysize", "int", 2048, "RSA key size in bits for a newly created minion key.",
          check=_keysize),
    Field("encryption_algorithm", "str", "OAEP-SHA224", "RSA OAEP variant used in _auth.",
          choices=ENCRYPTION_ALGORITHMS),
    Field("signing_algorithm", "str", "PKCS1v15-SHA224", "RSA signature scheme.",
          choices=SIGNING_ALGORITHMS),
    Field("cmd_enabled", "bool", False,
          "Allow cmd.run-style shell execution; off unless set."),
    Field("job_timeout", "float", 300, "Seconds a job may run before it is stopped.",
          check=positive),
    Field("grains", "dict", {}, "Static grains, merged over the detected ones."),
    Field("schedule", "dict", {}, "Scheduled jobs, as Salt's minion schedule option.",
          check=check_schedule),
    Field("loggers", "dict", {},
          "Telemetry loggers: {name: {function, pids, interval, threshold, max_interval, "
          "requires, ...}}.", check=check_loggers),
    Field("gpio", "dict", {}, "GPIO pins jobs may use (see autopi_agent/gpio.py).",
          schema=GPIO_SCHEMA),
    Field("mine_functions", "dict", {},
          "Salt mine functions: {alias: [args] | {mine_function: FUN, kw: v}}.",
          check=check_mine_functions),
    Field("mine_interval", "float", 60, "Minutes between mine updates; 0 turns them off.",
          check=non_negative),
    Field("returners", "dict", {},
          "Returner settings by name, e.g. {jsonl: {max_bytes, backups, fsync}, "
          "syslog: {address, facility}}."),
    Field("obd", "dict", {}, "OBD-II adapter (see autopi_agent/obd/settings.py).",
          schema=OBD_SCHEMA),
    Field("power", "dict", {},
          "Power manager: {enabled, mcu: {port, baudrate, timeout}, ignition: {source, pin}, "
          "engine_on_voltage, sleep_after, low_voltage, ... } (see autopi_agent/power/settings.py).",
          schema=POWER_SCHEMA),
    Field("vehicle_events", "dict", {},
          "Vehicle events (vehicle/<id>/...): {enabled, disabled: [GLOB], "
          "rate_limit: {default: S, NAME: S}, dtc_interval: S} "
          "(see autopi_agent/minion/vehicle_events.py).", schema=VEHICLE_EVENTS_SCHEMA),
    Field("return_timeout", "float", 60,
          "Seconds to wait for the master to acknowledge a job return.", check=positive),
    Field("spool_max_bytes", "int", 64 * 1024 * 1024,
          "Bytes of unsent samples, events and returns the spool keeps while offline; "
          "over it the oldest telemetry goes first, job returns last.", check=positive),
    Field("spool_max_age", "float", 7 * 86400,
          "Seconds an unsent sample or event is kept before it is dropped (and counted).",
          check=positive),
    Field("spool_max_age_returns", "float", 30 * 86400,
          "Seconds an unsent job return is kept.", check=positive),
    Field("file_roots", "dict", {},
          "Masterless state trees: {saltenv: [DIR, ...]} (as Salt's file_roots)."),
    Field("pillar_roots", "dict", {},
          "Masterless pillar trees: {saltenv: [DIR, ...]} (as Salt's pillar_roots)."),
    Field("failhard", "bool", False, "Stop a state run at the first failing state."),
    Field("test", "bool", False, "Run every state.apply as a dry run (test=True)."),
    Field("pillar_mask_output", "bool", True,
          "pillar.items masks values unless asked with unmask=True."),
    Field("shutdown_flush_timeout", "float", 5,
          "Seconds a stopping agent spends delivering what is spooled before it exits.",
          check=non_negative),
    Field("config_trial_window", "float", 120,
          "Seconds an agent restarted on a config a state changed (agent.config) has to "
          "authenticate with the master before it rolls the change back.", check=positive),
)


def load_agent_config(
    path: Path | str | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The agent's validated options; ``path`` None means defaults plus ``overrides``.

    Raises :class:`ConfigError` naming the file, the key and what was expected.
    """
    if path is None:
        opts = load(path, AGENT_SCHEMA, overrides)
    else:  # the main file, then agent.d/*.yaml in name order (see autopi_agent/dropins.py)
        opts = load_layers(Path(path), AGENT_SCHEMA, overrides)
        opts["conf_file"] = str(path)  # Salt's option name; agent.config finds agent.d by it
    if opts["id"] is None:
        opts["id"] = socket.gethostname()
    if opts["recon_max"] < opts["recon_default"]:
        raise ConfigError(
            f"{path or 'overrides'}: key 'recon_max': expected a value not below "
            f"recon_default ({opts['recon_default']}), got {opts['recon_max']!r}"
        )
    return opts
