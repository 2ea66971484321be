"""Storage operations; for now the mirror conversion used by the reconcile and hostd."""

from __future__ import annotations

from typing import Any

from apps import virt


def pool_fields(info: virt.PoolInfo) -> dict[str, Any]:
    """The StoragePool model fields for a pool as libvirt reports it."""
    return {
        "name": info.name,
        "type": info.type or "",
        "active": info.active,
        "persistent": info.persistent,
        "autostart": info.autostart,
        "capacity": info.capacity or 0,
        "allocation": info.allocation or 0,
        "available": info.available or 0,
        "target_path": info.target_path or "",
    }
