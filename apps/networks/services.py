"""Network operations; for now the mirror conversion used by the reconcile and hostd."""

from __future__ import annotations

from typing import Any

from apps import virt


def network_fields(info: virt.NetworkInfo) -> dict[str, Any]:
    """The Network model fields for a network as libvirt reports it."""
    return {
        "name": info.name,
        "active": info.active,
        "persistent": info.persistent,
        "autostart": info.autostart,
        "bridge": info.bridge or "",
        "forward_mode": info.forward_mode or "",
        "forward_dev": info.forward_dev or "",
        "ips": list(info.ips),
        "domain_name": info.domain_name or "",
    }
