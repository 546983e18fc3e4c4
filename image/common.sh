# Shared by image/*.sh (sourced): where things are, and which wheels fit the image.
# shellcheck shell=bash
# shellcheck disable=SC2034  # a library of settings for the scripts that source it

IMAGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "${IMAGE_DIR}")"
STAGE_SRC="${IMAGE_DIR}/pi-gen-stage"
LOCK_FILE="${STAGE_SRC}/00-agent/files/requirements.lock"

# Raspberry Pi OS bookworm arm64: CPython 3.11, glibc 2.36. pip does not widen a
# manylinux_2_36 target to older tags by itself, so every compatible one is listed.
aarch64_wheel_args() {
	local minor
	printf '%s\n' --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
		--platform manylinux2014_aarch64
	for minor in $(seq 17 36); do
		printf '%s\n' --platform "manylinux_2_${minor}_aarch64"
	done
}

die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}
