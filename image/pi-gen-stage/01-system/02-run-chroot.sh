#!/bin/bash -e
# In the image: no login on the OBD chip's UART, Bluetooth off that UART, and no password
# for anyone (SSH keys only; root is already locked by pi-gen's stage2).

systemctl mask serial-getty@ttyAMA0.service serial-getty@ttyS0.service serial-getty@serial0.service
if [ -e /usr/lib/systemd/system/hciuart.service ] || [ -e /lib/systemd/system/hciuart.service ]; then
	systemctl disable hciuart.service
fi

# pi-gen needs FIRST_USER_PASS when the first-boot rename is off; nobody needs to know it.
if [ -n "${FIRST_USER_NAME}" ] && id -u "${FIRST_USER_NAME}" > /dev/null 2>&1; then
	usermod --password '*' "${FIRST_USER_NAME}"
fi
