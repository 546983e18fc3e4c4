#!/bin/bash -e
# In the image (pi-gen's on_chroot): the venv from the staged wheels, offline and pinned by
# hash; the agent's user; its config rendered from the AUTOPI_* build settings; its units.

build_dir=/var/lib/autopi-build
venv=/opt/autopi-agent

# The build host's pip settings (find-links, constraints, index) mean nothing in here.
while read -r name; do
	unset "${name}"
done < <(compgen -e | grep '^PIP_' || true)
export PIP_NO_INDEX=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

python3 -m venv --clear "${venv}"
"${venv}/bin/pip" install --quiet --no-index --find-links "${build_dir}/wheels" \
	--only-binary=:all: --require-hashes -r "${build_dir}/wheels/requirements.lock"
"${venv}/bin/pip" install --quiet --no-index --no-deps "${build_dir}"/wheels/autopi_telematics-*.whl
"${venv}/bin/pip" check

systemd-sysusers autopi-agent.conf
systemd-tmpfiles --create autopi-agent.conf

install -d -m 0750 -o root -g autopi /etc/autopi-agent
"${venv}/bin/python" "${build_dir}/render_config.py" /etc/autopi-agent/agent.yaml
chown root:autopi /etc/autopi-agent/agent.yaml
chmod 0640 /etc/autopi-agent/agent.yaml
# Fail the build, not the car, on a bad setting: the agent's own loader checks the file.
"${venv}/bin/python" -c 'import sys; from autopi_agent.config import load_agent_config; load_agent_config(sys.argv[1])' \
	/etc/autopi-agent/agent.yaml

systemctl enable autopi-agent-firstboot.service autopi-agent.service
rm -rf "${build_dir}"
