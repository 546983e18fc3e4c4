#!/bin/bash
# Build the AutoPi SD-card image: pi-gen at a pinned release, Raspberry Pi OS Lite (arm64,
# bookworm) with our stage after stage2. See image/README.md for the settings.
#
#   sudo AUTOPI_MASTER=master.example.com AUTOPI_SSH_PUBKEY_FILE=~/.ssh/id_ed25519.pub image/build.sh
#   image/build.sh --print-config     show pi-gen's config for these settings; build nothing
set -euo pipefail
# shellcheck source=image/common.sh
source "$(dirname "$0")/common.sh"

PIGEN_REPO="https://github.com/RPi-Distro/pi-gen.git"
PIGEN_TAG="2026-06-18-raspios-bookworm-arm64"
PIGEN_COMMIT="d7a31c6aa09f4b867902c51da2b45807c0a1709e"
PIGEN_DIR="${PIGEN_DIR:-${IMAGE_DIR}/.pi-gen}"
STAGE_NAME="stage-autopi"
IMG_NAME="${IMG_NAME:-autopi}"

check_settings() {
	[ -n "${AUTOPI_MASTER:-}" ] || die "set AUTOPI_MASTER to the master address the cars connect to"
	[ -n "${AUTOPI_SSH_PUBKEY_FILE:-}" ] ||
		die "set AUTOPI_SSH_PUBKEY_FILE: the image has no password, SSH keys are the only way in"
	[ -r "${AUTOPI_SSH_PUBKEY_FILE}" ] || die "cannot read ${AUTOPI_SSH_PUBKEY_FILE}"
	grep -Eq '^(ssh-|ecdsa-|sk-)' "${AUTOPI_SSH_PUBKEY_FILE}" ||
		die "${AUTOPI_SSH_PUBKEY_FILE} does not look like an OpenSSH public key"
	[[ "${IMG_NAME}" =~ ^[A-Za-z0-9._-]+$ ]] || die "IMG_NAME=${IMG_NAME}: letters, digits, . _ -"
	local user="${AUTOPI_ADMIN_USER:-admin}"
	if [[ ! "${user}" =~ ^[a-z][-a-z0-9_]*$ ]] || [ "${user}" = "autopi" ]; then
		die "AUTOPI_ADMIN_USER=${user}: a lower-case user name other than autopi"
	fi
	# The same checks the stage makes in the chroot, an hour earlier.
	"${PYTHON:-python3}" "${STAGE_SRC}/00-agent/files/render_config.py" --check ||
		die "fix the AUTOPI_* settings above"
	if [ -z "${AUTOPI_MASTER_FINGER:-}" ]; then
		echo "build.sh: AUTOPI_MASTER_FINGER is empty: cars will trust the first master key" \
			"they see. Pin it: cloud-master key finger" >&2
	fi
}

# pi-gen's config is sourced by bash; every value is quoted with printf %q.
write_config() {
	local password
	# pi-gen needs a password to skip the first-boot rename; the stage locks it, so
	# nobody ever needs to know it.
	password="$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)"
	printf '# Written by image/build.sh; rewritten on every build.\n'
	printf '%s=%q\n' \
		IMG_NAME "${IMG_NAME}" \
		RELEASE bookworm \
		STAGE_LIST "stage0 stage1 stage2 ${STAGE_NAME}" \
		DEPLOY_COMPRESSION "${DEPLOY_COMPRESSION:-zip}" \
		LOCALE_DEFAULT "${LOCALE_DEFAULT:-en_GB.UTF-8}" \
		KEYBOARD_KEYMAP "${KEYBOARD_KEYMAP:-gb}" \
		KEYBOARD_LAYOUT "${KEYBOARD_LAYOUT:-English (UK)}" \
		TIMEZONE_DEFAULT "${TIMEZONE_DEFAULT:-Etc/UTC}" \
		TARGET_HOSTNAME "${TARGET_HOSTNAME:-autopi}" \
		FIRST_USER_NAME "${AUTOPI_ADMIN_USER:-admin}" \
		FIRST_USER_PASS "${password}" \
		DISABLE_FIRST_BOOT_USER_RENAME 1 \
		ENABLE_SSH 1 \
		PUBKEY_SSH_FIRST_USER "$(cat "${AUTOPI_SSH_PUBKEY_FILE}")" \
		PUBKEY_ONLY_SSH 1
	if [ -n "${WPA_COUNTRY:-}" ]; then
		printf 'WPA_COUNTRY=%q\n' "${WPA_COUNTRY}"
	fi
	# Our stage's settings: exported, since pi-gen exports only its own variables.
	local name
	for name in AUTOPI_MASTER AUTOPI_MASTER_PORT AUTOPI_PUBLISH_PORT AUTOPI_MASTER_FINGER \
		AUTOPI_FLEET AUTOPI_OBD_PORT AUTOPI_OBD_BAUDRATE AUTOPI_UART_OVERLAY AUTOPI_ID_PREFIX \
		AUTOPI_LOG_LEVEL; do
		if [ -n "${!name:-}" ]; then
			printf 'export %s=%q\n' "${name}" "${!name}"
		fi
	done
}

fetch_pigen() {
	if [ ! -d "${PIGEN_DIR}/.git" ]; then
		git clone --quiet --depth 1 --branch "${PIGEN_TAG}" "${PIGEN_REPO}" "${PIGEN_DIR}"
	fi
	local head
	head="$(git -C "${PIGEN_DIR}" rev-parse HEAD)"
	[ "${head}" = "${PIGEN_COMMIT}" ] ||
		die "${PIGEN_DIR} is at ${head}, not pi-gen ${PIGEN_TAG} (${PIGEN_COMMIT}); remove it"
}

use_docker() {
	case "${AUTOPI_USE_DOCKER:-auto}" in
		1) return 0 ;;
		0) return 1 ;;
		*) command -v docker > /dev/null && docker info > /dev/null 2>&1 ;;
	esac
}

main() {
	check_settings
	if [ "${1:-}" = "--print-config" ]; then
		write_config
		return 0
	fi
	fetch_pigen
	# Inside the pi-gen tree: build-docker.sh copies only that tree into its container.
	"${IMAGE_DIR}/assemble-stage.sh" "${PIGEN_DIR}/${STAGE_NAME}"
	# Only our stage's image is wanted, not the plain Lite one.
	touch "${PIGEN_DIR}/stage2/SKIP_IMAGES"
	write_config > "${PIGEN_DIR}/config"
	chmod 0600 "${PIGEN_DIR}/config"

	local started
	started="$(date +%s)"
	if use_docker; then
		echo "build.sh: building with pi-gen's build-docker.sh"
		(cd "${PIGEN_DIR}" && ./build-docker.sh)
	else
		[ "$(id -u)" = "0" ] || die "pi-gen's build.sh needs root (or a running Docker daemon)"
		echo "build.sh: building with pi-gen's build.sh (no Docker daemon)"
		(cd "${PIGEN_DIR}" && ./build.sh)
	fi
	rm -f "${PIGEN_DIR}/config"
	echo "build.sh: done in $(( $(date +%s) - started )) s; the image:"
	find "${PIGEN_DIR}/deploy" -maxdepth 1 -newermt "@${started}" \
		\( -name "*${IMG_NAME}-autopi.img*" -o -name "*${IMG_NAME}-autopi.zip" \
		-o -name "*${IMG_NAME}-autopi.bmap" \) -print
}

main "$@"
