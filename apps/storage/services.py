"""Storage operations; for now the mirror conversion used by the reconcile and hostd."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from apps import virt
from apps.virt.storage import list_volumes


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


def sync_volumes(host, conn) -> int:
    """Mirror every volume of the host's active pools (pools must be mirrored first); returns changes."""
    from apps.core.mirror import sync_host_objects

    from .models import StoragePool, StorageVolume

    pools = dict(StoragePool.objects.filter(host=host).values_list("uuid", "pk"))
    rows = {}
    for vol in list_volumes(conn):
        pool_pk = pools.get(uuidlib.UUID(vol.pool_uuid))
        if pool_pk is None:
            continue
        rows[vol.uuid] = {
            "pool_id": pool_pk,
            "name": vol.name,
            "path": vol.path,
            "format": vol.format,
            "capacity": vol.capacity,
            "allocation": vol.allocation,
        }
    return sync_host_objects(StorageVolume, host, rows, complete=True, feed=False).count
