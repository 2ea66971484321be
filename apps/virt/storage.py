"""libvirt storage pools: listing and details."""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

import libvirt

from .errors import InvalidInput, translate, translated
from .xmlutil import attr_of, parse_xml, text_of


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


@dataclass
class VolumeEntry:
    """A storage volume as listed for the mirror; sizes in bytes. `uuid` is derived from its key."""

    key: str
    name: str
    path: str
    pool_uuid: str
    pool_name: str
    format: str
    capacity: int
    allocation: int

    @property
    def uuid(self) -> str:
        """A stable UUID for the volume (libvirt gives volumes a key, not a UUID)."""
        return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"libvirt-volume:{self.key}"))


def list_volumes(conn: libvirt.virConnect) -> list[VolumeEntry]:
    """Every volume of every active pool of a host (each pool refreshed first); vanished ones skipped."""
    with translated("the host"):
        pools = conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
    found: list[VolumeEntry] = []
    for pool in pools:
        try:
            pool.refresh(0)
            pool_uuid, pool_name = pool.UUIDString(), pool.name()
            volumes = pool.listAllVolumes(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_OPERATION_INVALID):
                continue
            raise translate(exc, f"storage pool {pool.name()}") from exc
        for vol in volumes:
            try:
                root = parse_xml(vol.XMLDesc(0))
                _type, capacity, allocation = vol.info()
                found.append(
                    VolumeEntry(
                        key=vol.key(),
                        name=vol.name(),
                        path=vol.path(),
                        pool_uuid=pool_uuid,
                        pool_name=pool_name,
                        format=attr_of(root, "target/format", "type") or "",
                        capacity=int(capacity),
                        allocation=int(allocation),
                    )
                )
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                    continue
                raise translate(exc, f"volume {vol.name()}") from exc
    return found
