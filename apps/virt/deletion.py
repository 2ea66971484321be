"""Deleting VMs: which disks are storage volumes, power off if asked, undefine, remove chosen volumes."""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from .domains import lookup
from .errors import InvalidState, NotFound, translated
from .states import SHUTOFF, state_name
from .xmlutil import parse_xml


def _undefine_flags(dom: libvirt.virDomain) -> int:
    """The undefine flags this VM needs (only those: some drivers refuse flags they do not know)."""
    flags = 0
    try:
        if dom.hasManagedSaveImage(0):
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    except libvirt.libvirtError:
        pass
    try:
        if dom.snapshotNum(0):
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    except libvirt.libvirtError:
        pass
    try:
        if dom.listAllCheckpoints(0):
            flags |= libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    except (libvirt.libvirtError, AttributeError):
        pass
    if parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).find("os/nvram") is not None:
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    return flags


@dataclass
class DiskVolume:
    """A disk of a VM and, when it is a volume of a storage pool, that volume's path."""

    target: str
    device: str
    source: str | None
    volume_path: str | None  # None: not a storage volume (a host file outside pools, a network disk...)


def _volume_path(conn: libvirt.virConnect, disk) -> tuple[str | None, str | None]:
    src = disk.find("source")
    if src is None:
        return None, None
    if src.get("pool") and src.get("volume"):
        source = f"{src.get('pool')}/{src.get('volume')}"
        try:
            return source, conn.storagePoolLookupByName(src.get("pool")).storageVolLookupByName(
                src.get("volume")
            ).path()
        except libvirt.libvirtError:
            return source, None
    source = src.get("file") or src.get("dev")
    if not source:
        return src.get("name") or src.get("dir"), None
    try:
        return source, conn.storageVolLookupByPath(source).path()
    except libvirt.libvirtError:
        return source, None


def disk_volumes(conn: libvirt.virConnect, uuid: str) -> list[DiskVolume]:
    """The VM's disks and CD-ROMs, each with its storage volume path if it is one (pools refreshed)."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        root = parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    result = []
    for disk in root.findall("devices/disk"):
        target = disk.find("target")
        source, path = _volume_path(conn, disk)
        result.append(
            DiskVolume(
                target=target.get("dev", "") if target is not None else "",
                device=disk.get("device", "disk"),
                source=source,
                volume_path=path,
            )
        )
    return result


def undefine_domain(conn: libvirt.virConnect, uuid: str, *, force: bool = False) -> bool:
    """Remove a VM's definition (with its managed save, snapshot metadata and NVRAM).

    A running VM is refused unless `force`, which powers it off first. Returns False if libvirt no
    longer has the VM (an earlier try went through).
    """
    try:
        dom = lookup(conn, uuid)
    except NotFound:
        return False
    name = dom.name()
    with translated(f"VM {name}"):
        state = state_name(dom.state()[0])
        if state != SHUTOFF:
            if not force:
                raise InvalidState(
                    f"VM {name} is {state}; shut it down first, or force the deletion (it is powered off)."
                )
            if dom.isActive():
                dom.destroy()
        if dom.isPersistent():
            dom.undefineFlags(_undefine_flags(dom))
    return True
