"""Render /etc/autopi-agent/agent.yaml from the AUTOPI_* build settings (run in the image).

The minion id is left out on purpose: the first boot derives it from the Pi's serial number,
so every card made from one image is a different car.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any

HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
DEVICE = re.compile(r"^/dev/[A-Za-z0-9/_.-]+$")


class SettingError(ValueError):
    """A build setting that would make a broken agent.yaml."""


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "") or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingError(f"{name}={raw!r}: expected a TCP port number")
    return int(raw)


def _masters(raw: str) -> str | list[str]:
    hosts = [h for h in re.split(r"[,\s]+", raw.strip()) if h]
    if not hosts:
        raise SettingError("AUTOPI_MASTER is empty: set the master address the cars connect to")
    for host in hosts:
        if not HOST.match(host):
            raise SettingError(f"AUTOPI_MASTER: {host!r} is not a host name or address")
    return hosts[0] if len(hosts) == 1 else hosts


def agent_config(env: Mapping[str, str]) -> dict[str, Any]:
    """The agent's options from the build environment; raises SettingError naming the bad one."""
    config: dict[str, Any] = {
        "master": _masters(env.get("AUTOPI_MASTER", "")),
        "master_port": _port(env, "AUTOPI_MASTER_PORT", 4506),
        "publish_port": _port(env, "AUTOPI_PUBLISH_PORT", 4505),
        "root_dir": "/var/lib/autopi-agent",
        "log_level": env.get("AUTOPI_LOG_LEVEL", "") or "info",
        "log_format": "json",
    }
    finger = env.get("AUTOPI_MASTER_FINGER", "").strip().lower()
    if finger:
        config["master_finger"] = finger
    fleet = env.get("AUTOPI_FLEET", "").strip()
    if fleet:
        if not NAME.match(fleet):
            raise SettingError(f"AUTOPI_FLEET={fleet!r}: use letters, digits, '.', '_' or '-'")
        config["grains"] = {"fleet": fleet}
    port = env.get("AUTOPI_OBD_PORT", "") or "/dev/serial0"
    if not DEVICE.match(port):
        raise SettingError(f"AUTOPI_OBD_PORT={port!r}: expected a device path such as /dev/serial0")
    obd: dict[str, Any] = {"port": port}
    baudrate = env.get("AUTOPI_OBD_BAUDRATE", "")
    if baudrate:
        if not baudrate.isdigit():
            raise SettingError(f"AUTOPI_OBD_BAUDRATE={baudrate!r}: expected a number")
        obd["baudrate"] = int(baudrate)
    config["obd"] = obd
    return config


def main(argv: list[str]) -> int:
    """``render_config.py OUTPUT`` writes the file; ``render_config.py --check`` only checks."""
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTPUT|--check", file=sys.stderr)
        return 2
    try:
        config = agent_config(os.environ)
    except SettingError as err:
        print(f"render_config: {err}", file=sys.stderr)
        return 1
    if argv[1] == "--check":
        return 0
    import yaml  # here, so that --check runs on a build host without PyYAML
    header = "# Rendered at image build time; the first boot adds this car's id.\n"
    with open(argv[1], "w", encoding="utf-8") as out:
        out.write(header + yaml.safe_dump(config, default_flow_style=False, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
