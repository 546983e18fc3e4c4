#!/bin/bash -e
# Host side: check the build-time settings, stage the wheels for the chroot, install the
# agent's systemd units, sysusers/tmpfiles entries, first-boot script and docs.
# The wheels, units and README are put into files/ by image/assemble-stage.sh.

: "${AUTOPI_MASTER:?set AUTOPI_MASTER to the master address the cars connect to (image/README.md)}"

shopt -s nullglob
agent_wheels=(files/wheels/autopi_telematics-*.whl)
if [ "${#agent_wheels[@]}" -ne 1 ] || [ ! -f files/wheels/requirements.lock ]; then
	echo "00-agent: expected one autopi_telematics wheel and requirements.lock in" \
		"$(pwd)/files/wheels; assemble the stage with image/assemble-stage.sh" >&2
	exit 1
fi

# Not under /tmp: on_chroot mounts a tmpfs there, hiding anything staged below it.
build_dir="${ROOTFS_DIR}/var/lib/autopi-build"
rm -rf "${build_dir}"
install -d -m 0755 "${build_dir}/wheels"
install -m 0644 files/wheels/* "${build_dir}/wheels/"
install -m 0644 files/render_config.py "${build_dir}/"

install -m 0644 files/systemd/autopi-agent.service "${ROOTFS_DIR}/usr/lib/systemd/system/"
install -m 0644 files/systemd/autopi-agent-firstboot.service "${ROOTFS_DIR}/usr/lib/systemd/system/"
install -d -m 0755 "${ROOTFS_DIR}/usr/lib/sysusers.d" "${ROOTFS_DIR}/usr/lib/tmpfiles.d"
install -m 0644 files/systemd/autopi-agent.sysusers "${ROOTFS_DIR}/usr/lib/sysusers.d/autopi-agent.conf"
install -m 0644 files/systemd/autopi-agent.tmpfiles "${ROOTFS_DIR}/usr/lib/tmpfiles.d/autopi-agent.conf"
install -d -m 0755 "${ROOTFS_DIR}/usr/lib/autopi-agent" "${ROOTFS_DIR}/usr/share/doc/autopi-agent"
install -m 0755 files/firstboot "${ROOTFS_DIR}/usr/lib/autopi-agent/firstboot"
install -m 0644 files/README.md "${ROOTFS_DIR}/usr/share/doc/autopi-agent/README.md"

# Read by the first-boot unit: how minion ids are made on this fleet.
printf 'AUTOPI_ID_PREFIX=%s\n' "${AUTOPI_ID_PREFIX:-autopi}" > "${ROOTFS_DIR}/etc/default/autopi-agent"
chmod 0644 "${ROOTFS_DIR}/etc/default/autopi-agent"
