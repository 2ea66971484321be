#!/usr/bin/env bash
# Install the Debian packages Vireo needs (as root, on Debian 12 or 13). Idempotent: installs only
# what is missing. `scripts/setup-system.sh test` adds what the test suite needs.
set -euo pipefail

packages=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config
          qemu-system-x86 qemu-utils dnsmasq-base redis-server python3-venv python3-dev gcc make
          iproute2 ca-certificates openssl)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
if [[ "${1:-}" == "test" ]]; then
  # The tiny test guest (a Debian kernel and a busybox initramfs), the browser, PostgreSQL's client,
  # and an sshd that tests start privately on loopback (qemu+ssh hosts, console tunnels).
  packages+=(linux-image-cloud-amd64 busybox-static chromium postgresql-client openssh-server)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "Missing Debian packages: ${missing[*]}. Run as root, or install them first." >&2
    exit 1
  fi
  echo "Installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
