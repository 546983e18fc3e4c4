"""Core grains, read from files below a root directory, with Salt's grain names and values.

``collect(minion_id)`` reads the live system; ``collect(minion_id, root=tree)`` reads a
fake root filesystem instead (tests, image builds). Files read below ``root``:
``etc/os-release`` (or ``usr/lib/os-release``), ``etc/machine-id`` (or
``var/lib/dbus/machine-id``), ``proc/cpuinfo``, ``proc/meminfo``, ``proc/net/if_inet6``,
``proc/device-tree/model`` and ``proc/device-tree/serial-number``.

What only the running kernel knows comes from it when ``root`` is ``/`` and otherwise from
two files at the top of the fake root:

- ``uname.json``: ``{"sysname", "nodename", "release", "version", "machine"}`` as
  ``os.uname()`` gives them, plus an optional ``"fqdn"`` (default: the nodename);
- ``ip4_interfaces.json``: ``{"eth0": ["192.0.2.7"], ...}`` as the interfaces' IPv4
  addresses (live: ``socket.if_nameindex`` and the SIOCGIFADDR ioctl, which gives an
  interface's primary address).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shlex
import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from autopi_agent import __version__

__all__ = ["SALT_VERSION", "SALT_VERSION_INFO", "collect", "parse_os_release"]

log = structlog.get_logger(__name__)

# The Salt release whose minion we stand in for: a stock salt-master checks these grains.
SALT_VERSION = "3008.4"
SALT_VERSION_INFO = [3008, 4]

_SIOCGIFADDR = 0x8915
_LINUX_SUFFIX = re.compile(r"\W(?:gnu/)?linux", re.IGNORECASE)
# First ten letters of NAME (spaces dropped, lowercased) -> Salt's traditional 'os' value.
_OS_NAMES = {"debian": "Debian", "raspbian": "Raspbian", "redhatente": "RedHat",
             "archarm": "Arch ARM", "arch": "Arch", "linuxmint": "Mint", "sles": "SUSE"}
_FAMILY_IDS = {"debian": "Debian", "rhel": "RedHat", "fedora": "RedHat", "centos": "RedHat",
               "suse": "Suse", "opensuse": "Suse", "arch": "Arch", "alpine": "Alpine",
               "gentoo": "Gentoo"}
# For these, osfinger is "<os>-<major>" rather than "<osfullname>-<major>".
_FINGER_BY_OS = ("Debian", "Raspbian", "AlmaLinux")


def collect(minion_id: str, *, root: Path = Path("/"),
            extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The grains of the machine at ``root``; ``extra`` (config grains) is merged last."""
    root = Path(root)
    live = root.resolve() == Path("/")
    cpuinfo = _read(root / "proc/cpuinfo") or ""
    grains: dict[str, Any] = {"id": minion_id}
    grains.update(_os_grains(root))
    grains.update(_kernel_grains(root, live))
    grains.update(_cpu_grains(cpuinfo))
    grains.update(_memory_grains(root))
    grains.update(_network_grains(root, live))
    grains.update(_machine_id(root))
    grains.update(_raspberry_pi(root, cpuinfo))
    grains.update(agent_version=__version__, saltversion=SALT_VERSION,
                  saltversioninfo=list(SALT_VERSION_INFO))
    if extra:
        grains.update(extra)
    return grains


def parse_os_release(text: str) -> dict[str, str]:
    """The ``KEY=value`` pairs of an os-release file, shell quoting removed."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        key, sep, value = line.partition("=")
        if not sep or line.startswith("#"):
            continue
        try:
            fields[key.strip()] = " ".join(shlex.split(value))
        except ValueError:
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _read_first(*paths: Path) -> str | None:
    for path in paths:
        text = _read(path)
        if text is not None:
            return text
    return None


def _os_grains(root: Path) -> dict[str, Any]:
    text = _read_first(root / "etc/os-release", root / "usr/lib/os-release")
    if text is None:
        log.warning("grains.no_os_release", root=str(root))
        return {}
    release = parse_os_release(text)
    name = release.get("NAME", "Linux").strip()
    grains: dict[str, Any] = {
        "os": _os_name(name),
        "os_family": _os_family(release.get("ID", ""), release.get("ID_LIKE", "")),
        "osfullname": name,
    }
    if release.get("VERSION_CODENAME"):
        grains["oscodename"] = release["VERSION_CODENAME"]
    if release.get("VERSION_ID"):
        grains["osrelease"] = release["VERSION_ID"]
        grains.update(_release_info(grains["os"], name, release["VERSION_ID"]))
    return grains


def _os_name(full_name: str) -> str:
    distro = _LINUX_SUFFIX.sub("", full_name).strip()
    return _OS_NAMES.get(distro.replace(" ", "").lower()[:10], distro)


def _os_family(os_id: str, id_like: str) -> str:
    ids = [os_id, *id_like.split()]
    if "debian" in ids or "ubuntu" in ids:
        return "Debian"
    family = ids[-1] if id_like else os_id
    return _FAMILY_IDS.get(family, family.capitalize())


def _release_info(os_name: str, full_name: str, release: str) -> dict[str, Any]:
    info: list[int | str] = [int(part) if part.isdigit() else part
                             for part in release.split(".")]
    grains: dict[str, Any] = {"osrelease_info": info}
    if isinstance(info[0], int):
        grains["osmajorrelease"] = info[0]
    finger_name = os_name if os_name in _FINGER_BY_OS else full_name
    finger_version = release if os_name == "Ubuntu" else info[0]
    grains["osfinger"] = f"{finger_name}-{finger_version}"
    return grains


def _uname(root: Path, live: bool) -> dict[str, str]:
    if live:
        uname = os.uname()
        return {"sysname": uname.sysname, "nodename": uname.nodename,
                "release": uname.release, "version": uname.version,
                "machine": uname.machine, "fqdn": _live_fqdn(uname.nodename)}
    text = _read(root / "uname.json")
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        log.warning("grains.bad_uname_json", root=str(root))
        data = {}
    return {str(key): str(value) for key, value in data.items()}


def _live_fqdn(nodename: str) -> str:
    try:
        infos = socket.getaddrinfo(nodename, None, 0, socket.SOCK_STREAM, 0,
                                   socket.AI_CANONNAME)
    except OSError:
        return nodename
    for info in infos:
        if info[3]:
            return info[3]
    return nodename


def _kernel_grains(root: Path, live: bool) -> dict[str, Any]:
    uname = _uname(root, live)
    nodename = uname.get("nodename", "")
    fqdn = uname.get("fqdn") or nodename or "localhost"
    host, _, domain = fqdn.partition(".")
    return {
        "kernel": uname.get("sysname", "Linux"),
        "kernelrelease": uname.get("release", ""),
        "kernelversion": uname.get("version", ""),
        "cpuarch": uname.get("machine", ""),
        "nodename": nodename,
        "localhost": socket.gethostname() if live else nodename,
        "fqdn": fqdn,
        "host": host,
        "domain": domain,
    }


def _cpuinfo_fields(cpuinfo: str) -> list[tuple[str, str]]:
    fields = []
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.append((key.strip(), value.strip()))
    return fields


def _cpu_grains(cpuinfo: str) -> dict[str, Any]:
    num_cpus, model, flags = 0, "", []
    board: dict[str, str] = {}
    for key, value in _cpuinfo_fields(cpuinfo):
        if key == "processor":
            num_cpus += 1
        elif key in ("vendor_id", "model name", "cpu"):
            model = value
        elif key == "Processor":  # 32-bit ARM kernels of old: "ARMv6-compatible processor"
            model = value.split("-")[0]
        elif key in ("flags", "Features"):
            flags = value.split()
        elif key in ("Hardware", "Model"):
            board[key] = value
    # A Raspberry Pi's arm64 kernel names no CPU model; its board lines are the best we have.
    model = model or board.get("Hardware") or board.get("Model") or "Unknown"
    return {"num_cpus": num_cpus, "cpu_model": model, "cpu_flags": flags}


def _memory_grains(root: Path) -> dict[str, Any]:
    grains = {"mem_total": 0, "swap_total": 0}
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        key, _, value = line.partition(":")
        name = {"MemTotal": "mem_total", "SwapTotal": "swap_total"}.get(key.strip())
        if name and value.split() and value.split()[0].isdigit():
            grains[name] = int(value.split()[0]) // 1024  # kB -> MiB, as Salt
    return grains


def _network_grains(root: Path, live: bool) -> dict[str, Any]:
    ip4 = _live_ipv4() if live else _fixture_ipv4(root)
    ip6 = _ipv6(root)
    names = sorted(set(ip4) | set(ip6))
    ip4_interfaces = {name: _sorted_addresses(ip4.get(name, [])) for name in names}
    ip6_interfaces = {name: _sorted_addresses(ip6.get(name, [])) for name in names}
    return {
        "ip4_interfaces": ip4_interfaces,
        "ip6_interfaces": ip6_interfaces,
        "ip_interfaces": {name: ip4_interfaces[name] + ip6_interfaces[name] for name in names},
        "ipv4": _sorted_addresses([a for addrs in ip4_interfaces.values() for a in addrs]),
        "ipv6": _sorted_addresses([a for addrs in ip6_interfaces.values() for a in addrs]),
    }


def _sorted_addresses(addresses: list[str]) -> list[str]:
    return [str(address) for address in sorted({ipaddress.ip_address(a) for a in addresses})]


def _live_ipv4() -> dict[str, list[str]]:
    interfaces: dict[str, list[str]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            interfaces[name] = []
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:
                continue  # no IPv4 address on this interface
            interfaces[name] = [socket.inet_ntoa(reply[20:24])]
    return interfaces


def _fixture_ipv4(root: Path) -> dict[str, list[str]]:
    text = _read(root / "ip4_interfaces.json")
    if not text:
        return {}
    try:
        data = json.loads(text)
        return {str(name): [str(ipaddress.IPv4Address(a)) for a in addrs]
                for name, addrs in data.items()}
    except (ValueError, AttributeError, TypeError):
        log.warning("grains.bad_ip4_interfaces_json", root=str(root))
        return {}


def _ipv6(root: Path) -> dict[str, list[str]]:
    interfaces: dict[str, list[str]] = {}
    for line in (_read(root / "proc/net/if_inet6") or "").splitlines():
        fields = line.split()
        if len(fields) != 6:
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        except ValueError:
            continue
        interfaces.setdefault(fields[5], []).append(str(address))
    return interfaces


def _machine_id(root: Path) -> dict[str, Any]:
    text = _read_first(root / "etc/machine-id", root / "var/lib/dbus/machine-id")
    return {"machine_id": text.strip()} if text and text.strip() else {}


def _raspberry_pi(root: Path, cpuinfo: str) -> dict[str, Any]:
    model = (_read(root / "proc/device-tree/model") or "").strip("\x00").strip()
    if not model.startswith("Raspberry Pi"):
        return {}
    fields = dict(_cpuinfo_fields(cpuinfo))
    serial = (_read(root / "proc/device-tree/serial-number") or "").strip("\x00").strip()
    grains = {"rpi_model": model, "rpi_serial": serial or fields.get("Serial", "")}
    if fields.get("Revision"):
        grains["rpi_revision"] = fields["Revision"]
    return grains
