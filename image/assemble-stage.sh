#!/bin/bash
# Put together a ready-to-run copy of the pi-gen stage at DEST: the stage from
# image/pi-gen-stage, the systemd units from systemd/, and the wheels the chroot installs
# offline (dependencies downloaded for aarch64 by their locked hashes, and the project's
# own wheel built from this checkout). image/build.sh and the image tests both use it.
#
#   image/assemble-stage.sh DEST
#
# AUTOPI_AGENT_WHEEL=FILE   use this wheel of the project instead of building one
# AUTOPI_WHEEL_CACHE=DIR    keep downloaded dependency wheels here between runs
# PYTHON=python3            the build host's Python (pip 20.3 or later)
set -euo pipefail
# shellcheck source=image/common.sh
source "$(dirname "$0")/common.sh"

[ "$#" -eq 1 ] || die "usage: $0 DEST"
dest="$1"
python="${PYTHON:-python3}"
files="${dest}/00-agent/files"

rm -rf "${dest}"
mkdir -p "$(dirname "${dest}")"
cp -a "${STAGE_SRC}" "${dest}"
install -d "${files}/systemd" "${files}/wheels"
install -m 0644 "${REPO_DIR}"/systemd/autopi-agent.service \
	"${REPO_DIR}"/systemd/autopi-agent-firstboot.service \
	"${REPO_DIR}"/systemd/autopi-agent.sysusers \
	"${REPO_DIR}"/systemd/autopi-agent.tmpfiles "${files}/systemd/"
install -m 0644 "${IMAGE_DIR}/README.md" "${files}/README.md"
install -m 0644 "${LOCK_FILE}" "${files}/wheels/requirements.lock"

# The build host's own pip settings (a local find-links, constraints) must not leak in.
export PIP_FIND_LINKS="" PIP_CONSTRAINT="" PIP_DISABLE_PIP_VERSION_CHECK=1
cache="${AUTOPI_WHEEL_CACHE:-}"
if [ -z "${cache}" ]; then
	cache="${dest}/.wheel-download"
fi
mkdir -p "${cache}"
mapfile -t wheel_args < <(aarch64_wheel_args)
"${python}" -m pip download --quiet --no-deps --require-hashes --dest "${cache}" \
	"${wheel_args[@]}" -r "${LOCK_FILE}"
# Copy exactly the locked files; a cache shared between runs may hold older versions.
"${python}" - "${LOCK_FILE}" "${cache}" "${files}/wheels" <<'PY'
import hashlib, pathlib, re, shutil, sys
lock, cache, out = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
wanted = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", pathlib.Path(lock).read_text()))
found = set()
for wheel in cache.glob("*.whl"):
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest in wanted and digest not in found:
        shutil.copy2(wheel, out / wheel.name)
        found.add(digest)
missing = wanted - found
if missing:
    sys.exit(f"assemble-stage: {len(missing)} locked wheel(s) not downloaded: {sorted(missing)}")
PY
if [ -z "${AUTOPI_WHEEL_CACHE:-}" ]; then
	rm -rf "${cache}"
fi

if [ -n "${AUTOPI_AGENT_WHEEL:-}" ]; then
	install -m 0644 "${AUTOPI_AGENT_WHEEL}" "${files}/wheels/"
else
	# Built from a copy: setuptools leaves build/ and *.egg-info in the tree it builds.
	src="$(mktemp -d)"
	trap 'rm -rf "${src}"' EXIT
	tar -C "${REPO_DIR}" --exclude-vcs --exclude=./.venv --exclude=./.cache --exclude=./build \
		--exclude='*.egg-info' --exclude=__pycache__ --exclude=./tests --exclude=./image \
		-cf - . | tar -C "${src}" -xf -
	"${python}" -m pip wheel --quiet --no-deps --wheel-dir "${files}/wheels" "${src}"
fi
echo "assembled the stage in ${dest}"
