#!/usr/bin/env bash
# Make sure libvirtd answers on qemu:///system (as root, without systemd).
# Idempotent: does nothing when libvirtd already answers.  Never listens on TCP.
set -u

URI="qemu:///system"
WAIT_SECONDS=20

answers() {
    virsh -c "$URI" version >/dev/null 2>&1
}

if answers; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-libvirtd: libvirtd does not answer on $URI and starting it needs root" >&2
    exit 1
fi
for tool in virsh virtlogd libvirtd; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "ensure-libvirtd: '$tool' not found (apt-get install libvirt-daemon-system libvirt-clients)" >&2
        exit 1
    fi
done

mkdir -p /run/libvirt

if ! pgrep -x virtlogd >/dev/null 2>&1; then
    virtlogd -d || { echo "ensure-libvirtd: virtlogd failed to start" >&2; exit 1; }
fi

# A libvirtd that is still shutting down does not answer: wait for it to go, then start a new one.
for _ in $(seq $((WAIT_SECONDS * 2))); do
    if answers; then
        exit 0
    fi
    if ! pgrep -x libvirtd >/dev/null 2>&1; then
        libvirtd -d || { echo "ensure-libvirtd: libvirtd failed to start" >&2; exit 1; }
    fi
    sleep 0.5
done

echo "ensure-libvirtd: libvirtd still does not answer on $URI after ${WAIT_SECONDS}s:" >&2
virsh -c "$URI" version 2>&1 | sed 's/^/  /' >&2
if pgrep -x libvirtd >/dev/null 2>&1; then
    echo "  (a libvirtd process is running; see its log, e.g. /var/log/libvirt/libvirtd.log)" >&2
else
    echo "  (no libvirtd process is running: it exited; run 'libvirtd' in the foreground to see why)" >&2
fi
exit 1
