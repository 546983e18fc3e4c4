"""Runs inside the Salt peer venv: Salt 3008's own grain code applied to a fake root tree.

Usage: python salt_grains_oracle.py ROOT. Prints the OS, CPU and memory grains Salt derives
from ROOT's etc/os-release, proc/cpuinfo and proc/meminfo, as JSON. Salt reads fixed paths,
so its file access is redirected into ROOT here (this is Salt's code, not the project's).
"""

import json
import os.path
import platform
import sys

import salt.grains.core as core
import salt.utils.files

ROOT = sys.argv[1]
_real_fopen = salt.utils.files.fopen
_real_isfile = os.path.isfile


def _inside(path):
    if isinstance(path, str) and path.startswith(("/proc/", "/etc/")):
        return os.path.join(ROOT, path.lstrip("/"))
    return path


def fopen(path, *args, **kwargs):
    return _real_fopen(_inside(path), *args, **kwargs)


def isfile(path):
    return _real_isfile(_inside(path))


def os_release():
    with open(os.path.join(ROOT, "etc/os-release"), encoding="utf-8") as lines:
        return platform._parse_os_release(lines)


salt.utils.files.fopen = fopen
os.path.isfile = isfile
core._freedesktop_os_release = os_release
# A pip-installed Salt cannot import the system's lsb_release module.
core._linux_lsb_distrib_data = lambda: ({}, True)

grains = core._linux_distribution_data()
grains.update(core._osrelease_data(grains["os"], grains["osfullname"], grains["osrelease"]))
grains.update(core._linux_cpudata())
grains.update(core._linux_memdata())
grains["osrelease_info"] = list(grains["osrelease_info"])
wanted = ("os", "os_family", "osfullname", "oscodename", "osrelease", "osrelease_info",
          "osmajorrelease", "osfinger", "num_cpus", "cpu_model", "cpu_flags", "mem_total",
          "swap_total")
json.dump({key: grains[key] for key in wanted if key in grains}, sys.stdout)
