#!/bin/bash -e
# Host side: the OBD chip's UART (no serial console on it), the hardware watchdog, small
# journald limits, and SSH by key only. Each edit of a shared file is one marked block, so
# running the stage again replaces it instead of adding another.

boot="${ROOTFS_DIR}/boot/firmware"
overlay="${AUTOPI_UART_OVERLAY:-disable-bt}"
if [[ ! "${overlay}" =~ ^[a-z0-9-]+$ ]]; then
	echo "01-system: AUTOPI_UART_OVERLAY=${overlay} is not an overlay name (or 'none')" >&2
	exit 1
fi

if [ ! -f "${boot}/config.txt" ] || [ ! -f "${boot}/cmdline.txt" ]; then
	echo "01-system: ${boot}/config.txt and cmdline.txt are missing; run after pi-gen's stage1" >&2
	exit 1
fi

sed -i '/^# BEGIN autopi-agent$/,/^# END autopi-agent$/d' "${boot}/config.txt"
{
	echo "# BEGIN autopi-agent"
	echo "# The OBD chip talks to the primary UART on GPIO 14/15. On boards with Bluetooth"
	echo "# the PL011 (ttyAMA0, a clock-independent baud rate) is taken back from it."
	echo "[all]"
	echo "enable_uart=1"
	if [ "${overlay}" != "none" ]; then
		echo "dtoverlay=${overlay}"
	fi
	echo "dtparam=watchdog=on"
	echo "# END autopi-agent"
} >> "${boot}/config.txt"

# A kernel or login console on serial0 would talk over the OBD chip: keep the others.
read -r -a words < "${boot}/cmdline.txt"
kept=()
for word in "${words[@]}"; do
	case "${word}" in
		console=serial0*|console=ttyAMA0*|console=ttyS0*) ;;
		*) kept+=("${word}") ;;
	esac
done
printf '%s\n' "${kept[*]}" > "${boot}/cmdline.txt"

install -d -m 0755 "${ROOTFS_DIR}/etc/systemd/journald.conf.d" \
	"${ROOTFS_DIR}/etc/systemd/system.conf.d" "${ROOTFS_DIR}/etc/ssh/sshd_config.d"
install -m 0644 files/journald.conf "${ROOTFS_DIR}/etc/systemd/journald.conf.d/60-autopi.conf"
install -m 0644 files/watchdog.conf "${ROOTFS_DIR}/etc/systemd/system.conf.d/60-autopi-watchdog.conf"
install -m 0644 files/sshd.conf "${ROOTFS_DIR}/etc/ssh/sshd_config.d/60-autopi.conf"
