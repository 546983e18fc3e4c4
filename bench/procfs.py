"""Memory of process trees read from /proc (RSS from status, PSS from smaps_rollup)."""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

PROC = Path("/proc")
KIB_PER_MIB = 1024


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    return text.rsplit(")", 1)[1].split()


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid`` (a daemon started in a new session)."""
    pids = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return sorted(pids)


def _kib_field(path: Path, name: str) -> int:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    """Resident set size of one process, KiB (0 when it is gone)."""
    return _kib_field(PROC / str(pid) / "status", "VmRSS")


def pss_kib(pid: int) -> int:
    """Proportional set size of one process, KiB (0 when it is gone)."""
    return _kib_field(PROC / str(pid) / "smaps_rollup", "Pss")


def group_rss_mib(pgid: int) -> float:
    """RSS summed over a process group, MiB."""
    return sum(rss_kib(pid) for pid in group_pids(pgid)) / KIB_PER_MIB


def group_pss_mib(pgid: int) -> float:
    """PSS summed over a process group, MiB."""
    return sum(pss_kib(pid) for pid in group_pids(pgid)) / KIB_PER_MIB


def open_files(pid: int) -> int:
    """Number of open file descriptors of one process (0 when it is gone)."""
    try:
        return len(list((PROC / str(pid) / "fd").iterdir()))
    except OSError:
        return 0


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft
