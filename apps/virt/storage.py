"""libvirt storage pools: listing and details."""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

import libvirt

from .errors import InvalidInput, translate, translated
from .xmlutil import parse_xml, text_of


@dataclass
class PoolInfo:
    """A libvirt storage pool; sizes are in bytes (0 while the pool is inactive)."""

    uuid: str
    name: str
    type: str
    active: bool
    persistent: bool
    autostart: bool
    capacity: int
    allocation: int
    available: int
    target_path: str | None


def _describe(pool: libvirt.virStoragePool) -> PoolInfo:
    root = parse_xml(pool.XMLDesc(0))
    state, capacity, allocation, available = pool.info()[:4]
    persistent = bool(pool.isPersistent())
    return PoolInfo(
        uuid=pool.UUIDString(),
        name=pool.name(),
        type=root.get("type", ""),
        active=state in (libvirt.VIR_STORAGE_POOL_RUNNING, libvirt.VIR_STORAGE_POOL_DEGRADED),
        persistent=persistent,
        autostart=bool(pool.autostart()) if persistent else False,
        capacity=int(capacity),
        allocation=int(allocation),
        available=int(available),
        target_path=text_of(root, "target/path"),
    )


def list_pools(conn: libvirt.virConnect) -> list[PoolInfo]:
    """All storage pools of a host (one listing call); pools deleted meanwhile are skipped."""
    with translated("the host"):
        pools = conn.listAllStoragePools(0)
    result = []
    for pool in pools:
        try:
            result.append(_describe(pool))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                continue
            raise translate(exc, f"storage pool {pool.name()}") from exc
    return result


def get_pool(conn: libvirt.virConnect, uuid: str) -> PoolInfo:
    """One storage pool by UUID (NotFound if absent)."""
    try:
        canonical = str(uuidlib.UUID(str(uuid)))
    except ValueError as exc:
        raise InvalidInput(f"{uuid!r} is not a valid storage pool UUID.") from exc
    with translated(f"storage pool {canonical}"):
        return _describe(conn.storagePoolLookupByUUIDString(canonical))
