"""Boot the image's disk with qemu-system-aarch64: TCG, direct kernel boot, ``-M virt``,
user-mode networking (the host's loopback is 10.0.2.2 from the guest), console to a file.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.image.harness import BuiltImage, HarnessError, progress
from tests.image.rig import MASTER_BEGIN, MASTER_END, REPORT_BEGIN, REPORT_END

HOST_FROM_GUEST = "10.0.2.2"
KERNEL_ARGS = ("root=/dev/vda rw console=ttyAMA0 panic=-1 "
               # The agent's and first boot's logs reach the console log, for failures.
               "systemd.journald.forward_to_console=1")


def qemu_argv(image: BuiltImage, console: Path, monitor: Path) -> list[str]:
    """The QEMU command: KVM does not boot guests on these machines, so TCG."""
    return [
        "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72",
        "-accel", "tcg,thread=multi", "-smp", "2", "-m", "1024",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", KERNEL_ARGS,
        "-drive", f"file={image.disk},format=raw,if=none,id=root",
        "-device", "virtio-blk-pci,drive=root",
        "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile=",
        # A PCI watchdog, so systemd's RuntimeWatchdogSec has hardware to drive.
        "-device", "i6300esb",
        "-display", "none", "-serial", f"file:{console}", "-no-reboot",
        "-monitor", f"unix:{monitor},server=on,wait=off",
    ]


@dataclass
class Guest:
    """One QEMU guest, started by a test and always stopped by its PID."""

    image: BuiltImage
    console: Path
    proc: subprocess.Popen[bytes] | None = field(default=None)
    started: float = 0.0

    @property
    def monitor(self) -> Path:
        return self.console.with_suffix(".monitor")

    def start(self) -> None:
        self.console.write_bytes(b"")
        self.monitor.unlink(missing_ok=True)
        log = self.console.with_suffix(".qemu.log").open("wb")
        self.proc = subprocess.Popen(qemu_argv(self.image, self.console, self.monitor), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        self.started = time.monotonic()
        progress(f"qemu started (pid {self.proc.pid}), console: {self.console}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def tail(self, lines: int = 80) -> str:
        qemu_log = self.console.with_suffix(".qemu.log")
        extra = qemu_log.read_text(errors="replace") if qemu_log.exists() else ""
        console = "\n".join(self.text().splitlines()[-lines:])
        return f"--- console tail ({self.console}):\n{console}\n--- qemu:\n{extra}"

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wait_for(self, marker: str, timeout: float) -> str:
        """Console text once ``marker`` appears; HarnessError with the tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if marker in text:
                return text
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"qemu exited ({self.proc.returncode}) before {marker!r}\n"
                                   f"{self.tail()}")
            time.sleep(1)
        raise HarnessError(f"no {marker!r} on the console after {timeout:.0f} s\n{self.tail()}")

    def section(self, begin: str, end: str, timeout: float) -> dict[str, list[str]]:
        """A rig report from the console: each ``key=value`` line between the markers."""
        text = self.wait_for(end, timeout)
        progress(f"guest printed {end} after {self.elapsed():.0f} s")
        body = text[text.index(begin):text.index(end)]
        found: dict[str, list[str]] = {}
        for match in re.finditer(r"^(\w+)=(.*?)\r?$", body, re.MULTILINE):
            found.setdefault(match.group(1), []).append(match.group(2))
        return found

    def report(self, timeout: float) -> dict[str, list[str]]:
        return self.section(REPORT_BEGIN, REPORT_END, timeout)

    def master_check(self, timeout: float) -> dict[str, list[str]]:
        return self.section(MASTER_BEGIN, MASTER_END, timeout)

    def power_down(self, timeout: float) -> int:
        """Press the virtual power button and wait for the guest to shut down and QEMU to exit."""
        assert self.proc is not None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.monitor))
            sock.sendall(b"system_powerdown\n")
            time.sleep(0.5)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"the guest did not power off within {timeout:.0f} s\n"
                               f"{self.tail()}") from None
        progress(f"guest powered off after {self.elapsed():.0f} s")
        return code
