"""The slow image tests' machinery: a cached Debian arm64 base, our stage applied to it
through the pi-gen stand-in (``pigen_driver.sh``), and a bootable disk made from the result.

Run alone for a verbose build and boot: ``python -m tests.image.harness [--boot]``.
Needs root, debootstrap, qemu-user-static with binfmt_misc, capsh, rsync, zstd, mke2fs and
(to boot) qemu-system-aarch64, all Debian packages (see ``HOST_TOOLS``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.image import rig

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("pigen_driver.sh")
STAGE_PACKAGES = REPO / "image/pi-gen-stage/00-agent/00-packages"
CACHE_DIR = Path(os.environ.get("AUTOPI_IMAGE_CACHE", "/var/cache/autopi-image-test"))
# Each run works in WORK_ROOT/run-<pid>: two test sessions on one machine must not share
# (or delete) each other's root filesystems.
WORK_ROOT = Path(os.environ.get("AUTOPI_IMAGE_WORK", "/var/tmp/autopi-image-test"))
MIRROR = os.environ.get("AUTOPI_DEBIAN_MIRROR", "http://deb.debian.org/debian")
RELEASE = "bookworm"

# command -> Debian package that provides it
HOST_TOOLS = {"debootstrap": "debootstrap", "capsh": "libcap2-bin", "rsync": "rsync",
              "zstd": "zstd", "mkfs.ext4": "e2fsprogs", "update-binfmts": "binfmt-support",
              "qemu-aarch64-static": "qemu-user-static", "findmnt": "util-linux"}
BOOT_TOOLS = {"qemu-system-aarch64": "qemu-system-arm"}
SYSTEM_PACKAGES = ("systemd", "systemd-sysv", "udev", "kmod", "initramfs-tools", "dbus")
KERNEL_PACKAGE = "linux-image-arm64"
# Only what mounts the root disk goes into the initramfs; MODULES=most would build for
# half an hour under qemu-user. Everything else loads from the root filesystem.
INITRAMFS_MODULES = ("virtio_pci", "virtio_mmio", "virtio_blk", "ext4")


class HarnessUnavailable(RuntimeError):
    """This machine cannot run the slow image tests (not root, or a tool is missing)."""


class HarnessError(RuntimeError):
    """A step of the build failed; the message carries the tail of its output."""


def progress(message: str) -> None:
    """One progress line on stderr (pytest shows it with -s, or on failure)."""
    sys.stderr.write(f"[image {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def run(argv: list[str], *, what: str, env: Mapping[str, str] | None = None,
        stdin: str | None = None, cwd: Path | None = None, timeout: float = 1800,
        log: Path | None = None) -> str:
    """Run a command; on failure raise HarnessError with the tail of its output."""
    started = time.monotonic()
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout, errors="replace")
    output = proc.stdout + proc.stderr
    if log is not None:
        with log.open("a") as handle:
            handle.write(f"$ {' '.join(argv)}\n{output}\n")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-60:])
        raise HarnessError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    progress(f"{what}: {time.monotonic() - started:.0f} s")
    return proc.stdout


def host_problems(boot: bool) -> list[str]:
    """What keeps this machine from running the slow path; empty when it can."""
    problems = [] if os.geteuid() == 0 else ["not root (chroot, mounts and debootstrap need it)"]
    tools = {**HOST_TOOLS, **(BOOT_TOOLS if boot else {})}
    problems += [f"{cmd} missing (apt-get install {pkg})" for cmd, pkg in tools.items()
                 if shutil.which(cmd) is None]
    return problems


def enable_binfmt() -> None:
    """Register qemu-user for aarch64 binaries (mounting binfmt_misc if needed)."""
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], what="mount binfmt_misc")
    entry = binfmt / "qemu-aarch64"
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        run(["update-binfmts", "--enable", "qemu-aarch64"], what="enable qemu-aarch64")
    if not entry.read_text().startswith("enabled"):
        raise HarnessUnavailable("binfmt_misc has no enabled qemu-aarch64 entry")


def base_packages() -> list[str]:
    """The base's packages: systemd, a kernel, and what our stage's 00-packages asks for."""
    stage = [w for line in STAGE_PACKAGES.read_text().splitlines()
             for w in line.split("#", 1)[0].split()]
    return [*SYSTEM_PACKAGES, KERNEL_PACKAGE, *stage]


def base_key() -> str:
    """Cache key of the base tarball: release, packages and every stand-in/rig file."""
    recipe = {"release": RELEASE, "packages": base_packages(), "modules": INITRAMFS_MODULES,
              "files": rig.base_files(), "version": rig.RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def driver_env(settings: Mapping[str, str]) -> dict[str, str]:
    """A clean environment for the stand-in, as pi-gen's build.sh would export it."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
           "FIRST_USER_NAME": rig.FIRST_USER, "TARGET_HOSTNAME": "raspberrypi"}
    env.update(settings)
    return env


def in_chroot(rootfs: Path, script: str, *, what: str, log: Path | None = None,
              env: Mapping[str, str] | None = None) -> str:
    """Run a bash script in ``rootfs`` the way pi-gen's on_chroot does."""
    return run([str(DRIVER), "chroot", str(rootfs)], stdin=script, what=what,
               env=driver_env(env or {}), log=log)


def _tar(*args: str) -> list[str]:
    return ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", *args]


def build_base(rootfs: Path, log: Path) -> None:
    """debootstrap + packages + the Raspberry Pi OS stand-in and the boot rig."""
    argv = ["debootstrap", "--arch=arm64", "--variant=minbase", "--include=ca-certificates",
            RELEASE, str(rootfs), MIRROR]
    try:
        run(argv, what="debootstrap (arm64, minbase)", log=log)
    except HarnessError as err:  # one retry: a mirror hiccup should not fail CI
        progress(f"debootstrap failed, retrying once: {str(err).splitlines()[0]}")
        _unmount_all(rootfs)
        run(["rm", "-rf", "--one-file-system", str(rootfs)], what="remove the failed bootstrap")
        rootfs.mkdir(parents=True)
        run(argv, what="debootstrap (arm64, minbase), second try", log=log)
    in_chroot(rootfs, rig.apt_script(SYSTEM_PACKAGES, KERNEL_PACKAGE, INITRAMFS_MODULES,
                                     base_packages()[len(SYSTEM_PACKAGES) + 1:]),
              what="apt-get in the chroot (systemd, kernel, python)", log=log)
    rig.install_base_files(rootfs)
    in_chroot(rootfs, rig.STAND_IN_SCRIPT, what="Raspberry Pi OS stand-in", log=log)


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """Serialise use of the shared cache (base tarball, wheels) between concurrent runs."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_base(work: Path, log: Path) -> Path:
    """The previous stage's root filesystem (``work/stage2/rootfs``), from cache if built."""
    with cache_lock():
        return _ensure_base(work, log)


def _ensure_base(work: Path, log: Path) -> Path:
    key = base_key()
    tarball = CACHE_DIR / f"base-{RELEASE}-arm64-{key}.tar.zst"
    rootfs = work / "stage2" / "rootfs"
    rootfs.mkdir(parents=True)
    if tarball.exists():
        run(_tar("-I", "zstd -T0", "-C", str(rootfs), "-xpf", str(tarball)),
            what=f"unpack the cached base {tarball.name}")
        return rootfs
    build_base(rootfs, log)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial")
    run(_tar("-I", "zstd -T0 -3", "-C", str(rootfs), "--exclude=./var/cache/apt/archives/*",
             "-cpf", str(partial), "."), what="cache the base")
    for old in CACHE_DIR.glob(f"base-{RELEASE}-arm64-*.tar.zst"):
        old.unlink()  # one base at a time: each is ~200 MB
    partial.rename(tarball)
    return rootfs


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """What the slow tests inspect: the stage's result and a bootable copy of it."""

    work: Path
    rootfs: Path
    disk: Path
    kernel: Path
    initrd: Path
    log: Path


def assemble_stage(dest: Path, log: Path) -> Path:
    """Our stage with its units and wheels, as image/build.sh puts it into pi-gen."""
    env = dict(os.environ, PYTHON=sys.executable,
               AUTOPI_WHEEL_CACHE=str(CACHE_DIR / "wheels"))
    with cache_lock():
        run([str(REPO / "image/assemble-stage.sh"), str(dest)], what="assemble the stage",
            env=env, log=log)
    return dest


def apply_stage(work: Path, settings: Mapping[str, str], log: Path) -> Path:
    """Run our stage after the base with the stand-in; the stage's root filesystem."""
    stage = assemble_stage(work / "stages" / "stage-autopi", log)
    env = driver_env({**settings, "WORK_DIR": str(work),
                      "PREV_ROOTFS_DIR": str(work / "stage2" / "rootfs")})
    run([str(DRIVER), "stage", str(stage)], what="our stage through the pi-gen stand-in",
        env=env, log=log)
    rootfs = work / "stage-autopi" / "rootfs"
    rig.export_finalise(rootfs)
    return rootfs


def make_disk(rootfs: Path, out: Path) -> tuple[Path, Path, Path]:
    """An ext4 disk image of ``rootfs`` (no loop device) and its kernel and initramfs."""
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise HarnessError(f"no kernel/initramfs in {rootfs / 'boot'}")
    kernel, initrd = out / "vmlinuz", out / "initrd.img"
    shutil.copyfile(kernels[-1], kernel)
    shutil.copyfile(initrds[-1], initrd)
    used = int(run(["du", "-sxb", str(rootfs)], what="measure the root filesystem").split()[0])
    disk = out / "disk.img"
    with disk.open("wb") as handle:
        handle.truncate(int(used * 1.3) + (400 << 20))
    run(["mkfs.ext4", "-q", "-L", "rootfs", "-d", str(rootfs), str(disk)],
        what="make the ext4 disk")
    return disk, kernel, initrd


def clean_work(work: Path) -> None:
    """Remove a previous run's work tree, unmounting anything left below it first."""
    if work.exists():
        _unmount_all(work)
        run(["rm", "-rf", "--one-file-system", str(work)], what="remove the previous work tree")


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve())
    targets = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target == prefix or target.startswith(prefix + "/"):
            targets.append(target)
    return sorted(targets, reverse=True)


def _unmount_all(path: Path) -> None:
    for target in _mounts_below(path):
        subprocess.run(["umount", "-l", target], check=False)
    if _mounts_below(path):
        raise HarnessError(f"could not unmount everything below {path}; remove it by hand")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_work_dir() -> Path:
    """This run's work tree; the trees of runs whose process is gone are removed first."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    for old in WORK_ROOT.glob("run-*"):
        pid = old.name.removeprefix("run-")
        if not pid.isdigit() or not _pid_alive(int(pid)):
            clean_work(old)
    work = WORK_ROOT / f"run-{os.getpid()}"
    clean_work(work)
    work.mkdir()
    return work


def build_image(settings: Mapping[str, str], *, work: Path | None = None) -> BuiltImage:
    """Base (cached), stage, export stand-in, disk: everything the slow tests need."""
    problems = host_problems(boot=False)
    if problems:
        raise HarnessUnavailable("; ".join(problems))
    enable_binfmt()
    if work is None:
        work = new_work_dir()
    else:
        clean_work(work)
        work.mkdir(parents=True)
    log = work / "build.log"
    started = time.monotonic()
    ensure_base(work, log)
    rootfs = apply_stage(work, settings, log)
    rig.install_boot_rig(rootfs, REPO / "systemd")
    disk, kernel, initrd = make_disk(rootfs, work)
    progress(f"image ready in {time.monotonic() - started:.0f} s (log: {log})")
    return BuiltImage(work, rootfs, disk, kernel, initrd, log)
