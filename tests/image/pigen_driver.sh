#!/bin/bash -e
# shellcheck disable=SC2119,SC2120  # on_chroot takes its script on stdin, as in pi-gen
# A stand-in for pi-gen's build.sh that runs ONE stage the way pi-gen does, so the image
# tests exercise our stage without pi-gen (which needs the Raspberry Pi archive, loop
# devices and an hour). Written from pi-gen's documented rules (shared/PI-GEN.md):
#
#   pigen_driver.sh stage STAGE_DIR      run a stage: prerun.sh, then every sub-stage
#   pigen_driver.sh chroot ROOTFS        run stdin in ROOTFS the way on_chroot does
#
# Environment, as pi-gen exports it: WORK_DIR, PREV_ROOTFS_DIR (the previous stage's
# root filesystem), and the config variables (FIRST_USER_NAME, AUTOPI_*, ...).

log() {
	printf '[%(%T)T] %s\n' -1 "$*"
}

copy_previous() {
	if [ ! -d "${PREV_ROOTFS_DIR}" ]; then
		echo "Previous stage rootfs not found"
		false
	fi
	mkdir -p "${ROOTFS_DIR}"
	rsync -aHAXx --exclude var/cache/apt/archives "${PREV_ROOTFS_DIR}/" "${ROOTFS_DIR}/"
}

# Mounts below $1, deepest first, are undone; nothing may stay mounted under a rootfs that
# someone later deletes (a bound /dev would go with it).
unmount() {
	local dir target
	dir="$(realpath "$1")"
	findmnt -rn -o TARGET | { grep -E "^${dir}(/|$)" || true; } | sort -r | while read -r target; do
		umount "${target}" || umount -l "${target}"
	done
}

mount_once() {
	mountpoint -q "$2" || mount "${@:3}" "$1" "$2"
}

on_chroot() {
	mount_once proc "${ROOTFS_DIR}/proc" -t proc
	mount_once /dev "${ROOTFS_DIR}/dev" --bind
	mount_once /dev/pts "${ROOTFS_DIR}/dev/pts" --bind
	mount_once /sys "${ROOTFS_DIR}/sys" --bind
	mount_once tmpfs "${ROOTFS_DIR}/run" -t tmpfs
	mount_once tmpfs "${ROOTFS_DIR}/tmp" -t tmpfs
	# shellcheck disable=SC2086  # CAPSH_ARG is one word or none, as in pi-gen
	capsh ${CAPSH_ARG} "--chroot=${ROOTFS_DIR}/" -- -e "$@"
}

package_list() {
	sed -e 's/#.*//' "$1" | tr -s '[:space:]' ' '
}

run_sub_stage() {
	local i packages
	log "Begin ${SUB_STAGE_DIR}"
	pushd "${SUB_STAGE_DIR}" > /dev/null
	for i in {00..99}; do
		if [ -f "${i}-debconf" ]; then
			on_chroot <<-EOF
				debconf-set-selections <<SELEOF
				$(cat "${i}-debconf")
				SELEOF
			EOF
		fi
		if [ -f "${i}-packages-nr" ]; then
			packages="$(package_list "${i}-packages-nr")"
			if [ -n "${packages// /}" ]; then
				log "Begin ${SUB_STAGE_DIR}/${i}-packages-nr"
				echo "apt-get -o Acquire::Retries=3 install --no-install-recommends -y ${packages}" | on_chroot
			fi
		fi
		if [ -f "${i}-packages" ]; then
			packages="$(package_list "${i}-packages")"
			if [ -n "${packages// /}" ]; then
				log "Begin ${SUB_STAGE_DIR}/${i}-packages"
				echo "apt-get -o Acquire::Retries=3 install -y ${packages}" | on_chroot
			fi
		fi
		if [ -d "${i}-patches" ]; then
			echo "${SUB_STAGE_DIR}/${i}-patches: quilt patches are not supported by this stand-in" >&2
			false
		fi
		if [ -x "${i}-run.sh" ]; then
			log "Begin ${SUB_STAGE_DIR}/${i}-run.sh"
			"./${i}-run.sh"
		fi
		if [ -f "${i}-run-chroot.sh" ]; then
			log "Begin ${SUB_STAGE_DIR}/${i}-run-chroot.sh"
			on_chroot < "${i}-run-chroot.sh"
		fi
	done
	popd > /dev/null
	log "End ${SUB_STAGE_DIR}"
}

run_stage() {
	log "Begin ${STAGE_DIR}"
	STAGE="$(basename "${STAGE_DIR}")"
	STAGE_WORK_DIR="${WORK_DIR}/${STAGE}"
	ROOTFS_DIR="${STAGE_WORK_DIR}/rootfs"
	export STAGE STAGE_WORK_DIR ROOTFS_DIR
	pushd "${STAGE_DIR}" > /dev/null
	unmount "${WORK_DIR}"
	if [ -f EXPORT_IMAGE ] && [ ! -f SKIP_IMAGES ]; then
		# shellcheck source=/dev/null
		IMG_SUFFIX="$(source ./EXPORT_IMAGE && printf '%s' "${IMG_SUFFIX}")"
		log "Stage exports an image with IMG_SUFFIX=${IMG_SUFFIX}"
	fi
	if [ ! -f SKIP ]; then
		if [ "${CLEAN:-0}" = "1" ] && [ -d "${ROOTFS_DIR}" ]; then
			rm -rf --one-file-system "${ROOTFS_DIR}"
		fi
		if [ -x prerun.sh ]; then
			log "Begin ${STAGE_DIR}/prerun.sh"
			./prerun.sh
		fi
		for SUB_STAGE_DIR in "${STAGE_DIR}"/*; do
			if [ -d "${SUB_STAGE_DIR}" ] && [ ! -f "${SUB_STAGE_DIR}/SKIP" ]; then
				run_sub_stage
			fi
		done
	fi
	unmount "${WORK_DIR}"
	popd > /dev/null
	log "End ${STAGE_DIR}"
}

export -f log copy_previous unmount mount_once on_chroot
export CAPSH_ARG="--drop=cap_setfcap"
export USE_QEMU="${USE_QEMU:-0}" ARCH=arm64 RELEASE="${RELEASE:-bookworm}"
export WORK_DIR PREV_ROOTFS_DIR IMG_SUFFIX

case "${1:-}" in
	stage)
		: "${WORK_DIR:?}" "${PREV_ROOTFS_DIR:?}"
		STAGE_DIR="$(realpath "$2")"
		export STAGE_DIR
		trap 'unmount "${WORK_DIR}"' EXIT
		run_stage
		;;
	chroot)
		ROOTFS_DIR="$(realpath "$2")"
		export ROOTFS_DIR
		trap 'unmount "${ROOTFS_DIR}"' EXIT
		on_chroot
		;;
	*)
		echo "usage: $0 stage STAGE_DIR | chroot ROOTFS < script" >&2
		exit 2
		;;
esac
