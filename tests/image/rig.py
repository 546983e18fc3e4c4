"""What stands in for Raspberry Pi OS under our stage in the image tests, and the boot rig.

The base is Debian bookworm arm64, not Raspberry Pi OS (whose archive is out of reach): the
few things our stage relies on from pi-gen's stages 1-2 are recreated here (boot partition
files, the first user with a password, volatile journal), plus what only the QEMU boot needs
(DHCP on the virtual NIC, a report printed on the console once multi-user is reached).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

RECIPE_VERSION = "2"  # bump to rebuild the cached base when the recipe below changes
FIRST_USER = "pi"
FIRST_USER_PASSWORD = "raspberry"  # like FIRST_USER_PASS: the stage must lock it
REPORT_BEGIN = "AUTOPI-BOOT-REPORT-BEGIN"
REPORT_END = "AUTOPI-BOOT-REPORT-END"
MASTER_BEGIN = "AUTOPI-MASTER-CHECK-BEGIN"
MASTER_END = "AUTOPI-MASTER-CHECK-END"

# Shortened from what pi-gen's stage1 puts on the boot partition: the lines our stage edits.
CONFIG_TXT = """\
# stand-in for Raspberry Pi OS's config.txt
dtparam=audio=on
auto_initramfs=1
arm_64bit=1

[cm4]
otg_mode=1

[all]
"""
CMDLINE_TXT = ("console=serial0,115200 console=tty1 root=PARTUUID=0badcafe-02 rootfstype=ext4 "
               "fsck.repair=yes rootwait\n")

NETWORK = """\
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
"""

# Ordered after multi-user.target without being waited for by it (no default dependencies,
# so the target gets no After= on it): systemd's "Reached target" line is not reliable.
REPORT_UNIT = """\
[Unit]
Description=Image test: report on the console
DefaultDependencies=no
After=multi-user.target autopi-agent.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/autopi-boot-report

[Install]
WantedBy=multi-user.target
"""

REPORT_SCRIPT = f"""\
#!/bin/sh
# Image test rig: what the host cannot see from outside, printed on the serial console.
exec > /dev/console 2>&1
echo {REPORT_BEGIN}
echo "agent=$(systemctl is-active autopi-agent.service)"
echo "firstboot=$(systemctl is-active autopi-agent-firstboot.service)"
echo "agent_status=$(systemctl show -p StatusText --value autopi-agent.service)"
echo "agent_watchdog=$(systemctl show -p WatchdogUSec --value autopi-agent.service)"
echo "machine_id=$(cat /etc/machine-id)"
echo "runtime_watchdog=$(systemctl show -p RuntimeWatchdogUSec --value)"
echo "hardware_watchdog=$(journalctl -b -o cat | grep -c 'Using hardware watchdog')"
for path in /etc/autopi-agent/agent.yaml /var/lib/autopi-agent /var/lib/autopi-agent/pki/minion \\
        /var/lib/autopi-agent/pki/minion/minion.pem /var/lib/autopi-agent/pki/minion/minion.pub; do
    echo "mode=$(stat -c '%a %U:%G %n' "$path")"
done
echo "identity=$(cat /boot/firmware/autopi-identity.yaml)"
echo "config_id=$(sed -n 's/^id: //p' /etc/autopi-agent/agent.yaml)"
echo {REPORT_END}
"""

STAND_IN_SCRIPT = f"""\
useradd --create-home --shell /bin/bash --groups dialout,sudo {FIRST_USER}
echo '{FIRST_USER}:{FIRST_USER_PASSWORD}' | chpasswd
usermod --password '*' root
echo raspberrypi > /etc/hostname
sed -i 's/^#\\?Storage=.*/Storage=volatile/' /etc/systemd/journald.conf
systemctl enable systemd-networkd.service
"""


def base_files() -> dict[str, str]:
    """Files written into the base, by path below the root (part of the cache key)."""
    return {
        "boot/firmware/config.txt": CONFIG_TXT,
        "boot/firmware/cmdline.txt": CMDLINE_TXT,
        "etc/systemd/network/20-image-test.network": NETWORK,
        "stand-in.sh": STAND_IN_SCRIPT,
    }


def install_base_files(rootfs: Path) -> None:
    for relative, text in base_files().items():
        if relative == "stand-in.sh":
            continue
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755 if relative.startswith("usr/local/sbin/") else 0o644)


# cloud-master.service run for real in the guest, from the image's venv (the wheel holds
# both sides), to show that its sandbox lets the master start, make keys and answer its CLI.
MASTER_CONFIG = """\
interface: 127.0.0.1
publish_port: 14505
ret_port: 14506
log_format: json
"""

MASTER_CHECK_UNIT = """\
[Unit]
Description=Image test: cloud-master.service in its sandbox
DefaultDependencies=no
After=autopi-boot-report.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/autopi-master-check

[Install]
WantedBy=multi-user.target
"""

MASTER_CHECK_SCRIPT = f"""\
#!/bin/sh
# Image test rig: start cloud-master.service as shipped and report on the console.
systemd-sysusers cloud-master.conf
systemctl start cloud-master.service
for _ in $(seq 120); do
    [ -S /var/lib/cloud-master/run/master-control.ipc ] && break
    sleep 1
done
keys=$(/opt/cloud-master/bin/cloud-master -c /etc/cloud-master/master.yaml key list --out json 2>&1)
exec > /dev/console 2>&1
echo {MASTER_BEGIN}
echo "master=$(systemctl is-active cloud-master.service)"
echo "master_keys=$(echo "$keys" | tr -d ' \\n')"
echo "master_key_mode=$(stat -c '%a %U' /var/lib/cloud-master/pki/master/master.pem)"
echo {MASTER_END}
"""


def install_boot_rig(rootfs: Path, units: Path) -> None:
    """What only the boot test needs, added after the stage (so not in the cached base): the
    console report, the master's unit with its user and config from this checkout, and a
    shorter agent watchdog so that the boot test proves the pings."""
    files = {
        "etc/systemd/system/autopi-boot-report.service": REPORT_UNIT,
        "usr/local/sbin/autopi-boot-report": REPORT_SCRIPT,
        "usr/lib/systemd/system/cloud-master.service": (units / "cloud-master.service").read_text(),
        "usr/lib/sysusers.d/cloud-master.conf": (units / "cloud-master.sysusers").read_text(),
        "etc/cloud-master/master.yaml": MASTER_CONFIG,
        "etc/systemd/system/autopi-master-check.service": MASTER_CHECK_UNIT,
        "usr/local/sbin/autopi-master-check": MASTER_CHECK_SCRIPT,
        # Short enough that a boot test sees several periods: without WATCHDOG=1 pings
        # systemd would kill the agent ("Failed with result 'watchdog'").
        "etc/systemd/system/autopi-agent.service.d/image-test.conf": "[Service]\nWatchdogSec=10\n",
    }
    for relative, text in files.items():
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755 if relative.startswith("usr/local/sbin/") else 0o644)
    link = rootfs / "opt/cloud-master"
    if not link.is_symlink():
        link.symlink_to("autopi-agent")
    for unit in ("autopi-boot-report.service", "autopi-master-check.service"):
        wants = rootfs / "etc/systemd/system/multi-user.target.wants" / unit
        wants.parent.mkdir(parents=True, exist_ok=True)
        if not wants.is_symlink():
            wants.symlink_to(f"/etc/systemd/system/{unit}")


def apt_script(system: Iterable[str], kernel: str, modules: Iterable[str],
               extra: Iterable[str]) -> str:
    """The base's packages; the initramfs is told to hold only the root disk's modules."""
    return f"""\
export DEBIAN_FRONTEND=noninteractive
apt-get -o Acquire::Retries=3 update
apt-get -o Acquire::Retries=3 install -y --no-install-recommends {' '.join(system)}
sed -i 's/^MODULES=.*/MODULES=list/' /etc/initramfs-tools/initramfs.conf
printf '%s\\n' {' '.join(modules)} >> /etc/initramfs-tools/modules
apt-get -o Acquire::Retries=3 install -y --no-install-recommends {kernel}
apt-get -o Acquire::Retries=3 install -y --no-install-recommends {' '.join(extra)}
apt-get clean
"""


def export_finalise(rootfs: Path) -> None:
    """What pi-gen's export-image does that matters here: no machine id, empty logs."""
    (rootfs / "etc/machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for log in (rootfs / "var/log").rglob("*"):
        if log.is_file() and not log.is_symlink():
            log.write_bytes(b"")
